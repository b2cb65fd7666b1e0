//! The daemon's command-line flags: the top layer of configuration, above
//! the file and the built-in defaults.

use std::path::PathBuf;

use super::Override;

#[derive(clap::Args)]
pub struct Flags {
    /// Config file layered over the built-in defaults.
    #[arg(long, short, env = "DSMIL_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub state_dir: Option<String>,
    #[arg(long)]
    pub cache_dir: Option<String>,
    #[arg(long)]
    pub socket: Option<String>,
    /// gRPC TCP listener address; "" turns it off.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Prometheus listener address; "" turns it off.
    #[arg(long)]
    pub metrics: Option<String>,
    /// KServe v2 REST (HTTP) listener address; "" turns it off.
    #[arg(long)]
    pub http: Option<String>,
    /// Clearance of the anonymous TCP/HTTP inference client (0 refuses
    /// callers without a client certificate); access.tcp_anonymous_clearance.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub anonymous_clearance: Option<u8>,
}

impl Flags {
    /// The flags given, as overrides of config keys.
    pub fn overrides(&self) -> Vec<Override> {
        let s = |v: &Option<String>| v.clone().map(toml::Value::String);
        [
            ("paths.state_dir", s(&self.state_dir)),
            ("paths.cache_dir", s(&self.cache_dir)),
            ("listeners.unix_socket", s(&self.socket)),
            ("listeners.tcp", s(&self.tcp)),
            ("listeners.metrics", s(&self.metrics)),
            ("listeners.http", s(&self.http)),
        ]
        .into_iter()
        .chain([(
            "access.tcp_anonymous_clearance",
            self.anonymous_clearance.map(|c| toml::Value::Integer(c.into())),
        )])
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// The unit's config file may be missing (the defaults apply); says so,
    /// once logging is set up, so an operator who expected their file
    /// learns why.
    pub fn warn_if_default_missing(&self) {
        if let Some(file) = self.config.as_deref().filter(|f| super::is_missing_default(f)) {
            tracing::warn!(
                file = %file.display(),
                "the config file is missing; running on the built-in defaults (`dsmild default-config` prints them)"
            );
        }
    }
}
