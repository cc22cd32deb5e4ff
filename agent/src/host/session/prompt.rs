//! Input-needed detection: the cursor's line looks like a prompt and the program has gone quiet.
//! Patterns alone would fire on any output that happens to end in `$`; silence alone on any
//! slow program. Together they say "this is waiting for someone".

use regex_lite::Regex;

/// (reason shown to users, case-insensitive pattern matched against the cursor's line)
const DEFAULT_PATTERNS: &[(&str, &str)] = &[
    ("confirmation", r"[\[(](y/n|yes/no|y/n/a)[\])]\s*[:?]?\s*$"),
    ("password", r"(password|passphrase|passcode|pin)( for [^:]*)?:\s*$"),
    ("secret", r"(token|secret|api[ _-]?key|otp|verification code)[^:]*:\s*$"),
    ("continue", r"(continue|proceed)\s*\?\s*(\[[^\]]*\])?\s*$"),
    ("are you sure", r"are you sure"),
    ("press enter", r"press (enter|return|any key)"),
    ("shell prompt", r"(^|[\w~/\])\]-])[$#>❯]\s?$"),
    ("shell prompt", r"[a-z~/\])]\s?%\s?$"),
];

pub struct PromptDetector {
    patterns: Vec<(String, Regex)>,
}

impl PromptDetector {
    /// The defaults plus `extra` regexes from config (reason: "custom pattern").
    pub fn new(extra: &[String]) -> Result<PromptDetector, String> {
        let mut patterns = Vec::new();
        for (reason, pattern) in DEFAULT_PATTERNS {
            let regex = Regex::new(&format!("(?i){pattern}")).map_err(|e| format!("built-in pattern: {e}"))?;
            patterns.push((reason.to_string(), regex));
        }
        for pattern in extra {
            let regex = Regex::new(pattern).map_err(|e| format!("prompt pattern {pattern:?}: {e}"))?;
            patterns.push(("custom pattern".to_string(), regex));
        }
        Ok(PromptDetector { patterns })
    }

    /// Why `line` looks like a prompt, if it does.
    pub fn matches(&self, line: &str) -> Option<&str> {
        let line = line.trim_start();
        if line.is_empty() {
            return None;
        }
        self.patterns.iter().find(|(_, re)| re.is_match(line)).map(|(reason, _)| reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_common_prompts_and_not_plain_output() {
        let detector = PromptDetector::new(&[]).expect("patterns compile");
        for (line, reason) in [
            ("Overwrite file? (y/n) ", "confirmation"),
            ("Proceed [Y/n]? ", "confirmation"),
            ("[sudo] password for alice: ", "password"),
            ("Enter API key: ", "secret"),
            ("continue? ", "continue"),
            ("Are you sure you want to delete it", "are you sure"),
            ("Press ENTER to continue", "press enter"),
            ("alice@box:~/src$ ", "shell prompt"),
            ("sh-5.2# ", "shell prompt"),
            ("$ ", "shell prompt"),
            ("box% ", "shell prompt"),
        ] {
            assert_eq!(detector.matches(line), Some(reason), "{line:?}");
        }
        for line in ["compiling 12 crates", "progress 50%", "price: 3$ each, done", ""] {
            assert_eq!(detector.matches(line), None, "{line:?}");
        }
        let custom = PromptDetector::new(&["^Name of the project: $".into()]).expect("compiles");
        assert_eq!(custom.matches("Name of the project: "), Some("custom pattern"));
        assert!(PromptDetector::new(&["(".into()]).is_err());
    }
}
