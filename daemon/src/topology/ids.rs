//! Device id lists as written in config: "0-14", "0-3,7,9-10".

/// Parses a list of ids and inclusive ranges; ids come back sorted, unique.
pub fn parse_id_list(text: &str) -> Result<Vec<u32>, String> {
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err("empty entry (expected ids like \"0-14\" or \"3,5,7-9\")".into());
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (parse_one(a)?, parse_one(b)?),
            None => {
                let id = parse_one(part)?;
                (id, id)
            }
        };
        if lo > hi {
            return Err(format!("range {part} runs backwards"));
        }
        ids.extend(lo..=hi);
    }
    let len = ids.len();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != len {
        return Err("an id is listed twice".into());
    }
    Ok(ids)
}

fn parse_one(s: &str) -> Result<u32, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{:?} is not a device id", s.trim()))
}

/// The inverse of [`parse_id_list`] for sorted ids: runs become ranges.
pub fn format_id_list(ids: &[u32]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}
