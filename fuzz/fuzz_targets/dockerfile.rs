//! Arbitrary text as a Dockerfile (the build context's, a client's input): parsed, then
//! every word the builder would expand expanded with a fixed environment, and the
//! ONBUILD triggers parsed as a later build would.
//!
//! Invariants: no panic, no unbounded recursion (nesting limits hold); a parse error
//! names a line within the text.

#![no_main]

use berth_build::dockerfile::{self, Instruction};
use berth_build::lex;
use libfuzzer_sys::fuzz_target;

fn lookup(k: &str) -> Option<String> {
    match k {
        "A" => Some("a b".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let df = match dockerfile::parse(text) {
        Ok(df) => df,
        Err(e) => {
            assert!(
                e.line <= text.lines().count() + 1,
                "INVARIANT: error line {} within the text",
                e.line
            );
            return;
        }
    };
    for a in &df.args {
        if let Some(d) = &a.default {
            let _ = lex::expand(d, df.escape, &lookup);
        }
    }
    for stage in &df.stages {
        let _ = lex::expand(&stage.base, df.escape, &lookup);
        for step in &stage.steps {
            match &step.instruction {
                Instruction::Env(pairs) | Instruction::Label(pairs) => {
                    for (k, v) in pairs {
                        let _ = lex::expand(k, df.escape, &lookup);
                        let _ = lex::expand(v, df.escape, &lookup);
                    }
                }
                Instruction::Expose(words) | Instruction::Volume(words) => {
                    for w in words {
                        let _ = lex::expand_words(w, df.escape, &lookup);
                    }
                }
                Instruction::Workdir(w) | Instruction::User(w) | Instruction::StopSignal(w) => {
                    let _ = lex::expand(w, df.escape, &lookup);
                }
                Instruction::Copy(c) | Instruction::Add(c) => {
                    for s in &c.sources {
                        let _ = lex::expand(s, df.escape, &lookup);
                    }
                    let _ = lex::expand(&c.dest, df.escape, &lookup);
                    for h in &c.heredocs {
                        let _ = lex::expand_heredoc(&h.body(), &lookup);
                    }
                }
                Instruction::Run { heredocs, .. } => {
                    for h in heredocs {
                        let _ = lex::expand_heredoc(&h.body(), &lookup);
                    }
                }
                Instruction::OnBuild(t) => {
                    let _ = dockerfile::parse_onbuild(t, df.escape);
                }
                _ => {}
            }
        }
    }
});
