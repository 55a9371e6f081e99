//! peerctl's shorthand parser: arbitrary arguments never panic, and what
//! parses survives a trip through its JSON form.

use peering_userspace::cli::shorthand::{parse_filters, parse_peering_options};

pub fn check(data: &[u8]) {
    let Ok(arg) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filters) = parse_filters(arg) {
        for f in &filters {
            assert!(
                !f.values.iter().any(String::is_empty) || arg.trim_start().starts_with(['[', '{'])
            );
        }
        let json = serde_json::to_string(&filters).expect("filters serialize");
        assert_eq!(parse_filters(&json).as_ref(), Ok(&filters), "{json}");
    }
    if let Ok(options) = parse_peering_options(arg) {
        let json = serde_json::to_string(&options).expect("options serialize");
        assert_eq!(parse_peering_options(&json), Ok(options), "{json}");
    }
}
