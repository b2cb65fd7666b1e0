//! `dsmilctl completions` and `dsmilctl man`: shell completion scripts
//! (clap_complete) and roff man pages (clap_mangen), both made from the
//! command definitions in `cli`, so they never disagree with the parser.
//! Local: no daemon. Packaging calls `dsmilctl man --out DIR` and
//! `dsmilctl completions SHELL` at build time.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// The completion script for `shell`, to stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = crate::cli::command();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
    Ok(())
}

/// dsmilctl(1) to stdout, or with `out` every page (dsmilctl.1 and one
/// per command: dsmilctl-deploy.1, ...) into that directory, each path
/// printed as written.
pub fn man(out: Option<&Path>) -> anyhow::Result<()> {
    let cmd = crate::cli::command();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        std::io::stdout().write_all(&page)?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_pages(cmd, dir)
}

/// Writes `cmd`'s page and its subcommands', named as man(1) looks them up
/// (the parent's name, a dash, the command's).
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir)?;
    }
    Ok(())
}
