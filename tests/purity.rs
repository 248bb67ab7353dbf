//! The pure core stays pure: no module of the decision core names tokio,
//! bollard or reqwest, or reads a clock.

#[test]
fn the_core_does_no_io() {
    let async_io = ["tokio", "bollard", "reqwest", "Instant::now", "SystemTime::now", "std::net"];
    let any_io = [&async_io[..], &["std::fs", "std::io"]].concat();
    // Loading a rules file is the one read the rules module does.
    for (file, forbidden) in [
        ("src/engine.rs", &any_io),
        ("src/classify.rs", &any_io),
        ("src/model.rs", &any_io),
        // explain, replay and post-mortems read recorded facts, never a host.
        ("src/explain.rs", &any_io),
        ("src/postmortem.rs", &any_io),
        ("src/rules.rs", &async_io.to_vec()),
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        // The module docs may say what the module does not do.
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
            for f in forbidden.iter() {
                assert!(!line.contains(f), "{file}:{}: the pure core mentions `{f}`: {line}", n + 1);
            }
        }
    }
}
