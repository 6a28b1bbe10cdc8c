//! `config::Config::parse` on arbitrary UTF-8, as TOML and as JSON. Everything downstream assumes
//! a parsed config is valid, so: whatever parses validates, and survives a JSON round trip
//! (`Config::parse(json, Some("json"))`) unchanged, classes and capacities included. Without an
//! extension, parse picks JSON exactly when the text starts with `{`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tigerfans_fuzz::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let summary = |r: &anyhow::Result<Config>| {
        r.as_ref().map(|c| serde_json::to_value(c).unwrap()).map_err(|e| format!("{e:#}"))
    };
    let guessed = summary(&Config::parse(text, None));
    for extension in ["toml", "json"] {
        let parsed = Config::parse(text, Some(extension));
        if (extension == "json") == text.trim_start().starts_with('{') {
            assert_eq!(summary(&parsed), guessed, "parse(text, None) disagrees with parse(text, Some({extension:?}))");
        }
        let Ok(config) = parsed else {
            continue;
        };
        if let Err(e) = config.validate() {
            panic!("parsed {extension} config does not validate: {e:#}");
        }
        let json = serde_json::to_string(&config).unwrap();
        let back = match Config::parse(&json, Some("json")) {
            Ok(back) => back,
            Err(e) => panic!("{extension} config, as JSON, is refused: {e:#}\n{json}"),
        };
        let classes = |c: &Config| {
            c.classes.iter().map(|k| (k.id.clone(), k.name.clone(), k.price_cents, k.capacity)).collect::<Vec<_>>()
        };
        assert_eq!(classes(&back), classes(&config));
        for class in &config.classes {
            assert_eq!(config.class(&class.id).map(|c| c.capacity), Some(class.capacity), "class ids are unique");
        }
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&config).unwrap());
    }
});
