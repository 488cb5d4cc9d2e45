//! Any UTF-8 text given as a config is either accepted or refused with errors that name a
//! place in it; `config::parse` never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use switchboard::config;

fuzz_target!(|text: &str| {
    // A folder that does not exist: a script named by the config is a read error, never a
    // file of this machine.
    let dir = Path::new("/nonexistent/switchboard-fuzz");
    match config::parse(text, Path::new("fuzz.toml"), dir) {
        Ok(c) => {
            assert!(
                !c.listeners.is_empty(),
                "a config without listeners was accepted"
            );
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a reason");
            let lines = text.split('\n').count();
            for e in &errors.0 {
                if e.file == Path::new("fuzz.toml") && e.line > 0 {
                    assert!(e.line <= lines, "{e}: line past the end of the text");
                    assert!(e.column >= 1, "{e}: column 0 with a line");
                }
            }
            // Rendering the messages must not panic either.
            let _ = errors.to_string();
        }
    }
});
