//! The pure core stays pure: no module of the decision core names tokio,
//! bollard or reqwest, or reads a clock.

#[test]
fn the_core_does_no_io() {
    let forbidden = ["tokio", "bollard", "reqwest", "Instant::now", "SystemTime::now", "std::fs", "std::net"];
    for file in ["src/engine.rs", "src/rules.rs", "src/classify.rs", "src/model.rs"] {
        let text = std::fs::read_to_string(file).unwrap();
        // The module docs may say what the module does not do.
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
            for f in forbidden {
                assert!(!line.contains(f), "{file}:{}: the pure core mentions `{f}`: {line}", n + 1);
            }
        }
    }
}
