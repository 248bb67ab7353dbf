//! What untrusted text may carry onward: secrets redacted and, for screens,
//! control characters replaced.
//!
//! Container logs hold whatever a client or an application wrote: a
//! `CREATE USER … PASSWORD '…'` that failed, a connection string, a command
//! line with `--password`. OpsGuard redacts them once, where log lines
//! become [`Evidence`] ([`redact_evidence`], called by the observer), so the
//! audit log, the web console, the terminal, post-mortems and the LLM prompt
//! all see the same redacted text; the prompt redacts again at the host's
//! edge (redaction is idempotent), for alarms built elsewhere.
//!
//! Every pattern is a `regex` (finite automata, linear in the line), and a
//! line is cut to [`MAX_REDACTED_LINE`] bytes before it is scanned, so
//! redaction is bounded whatever a container writes. It errs on the side of
//! hiding: a value after a key that merely looks secret (`bypass=on`) is
//! redacted too. Classification reads the raw lines before this, so
//! redaction never changes a root cause.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use crate::classify::truncate;
use crate::model::Evidence;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";
/// Lines longer than this are cut before redaction, to bound its work.
pub const MAX_REDACTED_LINE: usize = 16 * 1024;

struct Rule {
    re: Regex,
    with: &'static str,
}

/// Key names whose value is a secret (`password`, `DB_PASS`, `PGPASSWORD`,
/// `api_key`, `ACCESS_TOKEN`, `client_secret`, …), as a regex fragment.
const SECRET_KEY: &str = r"[a-z0-9_.\-]*(?:pass(?:w(?:or)?d|phrase)?|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credential|authorization)[a-z0-9_.\-]*";

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |re: &str, with: &'static str| Rule { re: Regex::new(re).expect("static redaction regex"), with };
    vec![
        // A private key on one line (a multi-line one is handled by `redact_lines`).
        rule(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
            "[REDACTED PRIVATE KEY]",
        ),
        // scheme://user:password@host → keep the user, drop the password. The
        // password runs to the last `@` of the word: it may hold `/` and `@`
        // (`postgres://u:p@ss/w@host/db`).
        rule(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*):\S*@", "${1}:[REDACTED]@"),
        // SQL: `PASSWORD 'x'`, `ENCRYPTED PASSWORD E'x'`, `IDENTIFIED BY 'x'`
        // (quotes doubled inside), `PASSWORD $$x$$`; a line cut inside the
        // literal is redacted to its end.
        rule(
            r"(?i)\b(password|identified\s+by)\s+(?:e?'(?:[^'\\]|''|\\.)*(?:'|$)|\$[a-z_]*\$.*?(?:\$[a-z_]*\$|$))",
            "${1} '[REDACTED]'",
        ),
        // Command-line flags: `--password X`, `--db-password=X`, `-token X`.
        rule(&format!(r#"(?i)(^|\s)(--?{SECRET_KEY})(\s+|=)("[^"]*"|'[^']*'|\S+)"#), "${1}${2}${3}[REDACTED]"),
        // key=value, key: value, "key": "value" and env-style KEY=value for
        // secret-looking keys (password, DB_PASS, PGPASSWORD, API_TOKEN,
        // APP_SECRET, api_key, …).
        rule(
            &format!(
                r#"(?i)({SECRET_KEY})(["']?\s*[=:]\s*)(?:(?:bearer|basic|token)\s+)?("[^"]*"|'[^']*'|[^\s,;&"'}}]+)"#
            ),
            "${1}${2}[REDACTED]",
        ),
        // Bearer / Basic credentials on their own. (After the key rule: this
        // one would take the key of `token DB_PASS=x` for the token and
        // leave the value.)
        rule(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/\-]{6,}=*", "${1} [REDACTED]"),
        // AWS access key ids.
        rule(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b", "[REDACTED AWS KEY]"),
        // Well-known token shapes: OpenAI, GitHub, Slack, JWTs.
        rule(
            r"\b(?:sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9\-]{10,}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+)",
            "[REDACTED]",
        ),
    ]
});

static KEY_BEGIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----").expect("static regex"));
static KEY_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY-----").expect("static regex"));

/// Redacts secrets in one line (cut to [`MAX_REDACTED_LINE`] bytes first):
/// passwords in connection strings and SQL, `--password` flags,
/// `password=`/`DB_PASS=`/`*_TOKEN=`/`*_SECRET=`/`api_key=` values, bearer
/// tokens, AWS access key ids, well-known token shapes and private keys.
/// Redacting twice changes nothing more.
pub fn redact(line: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(truncate(line, MAX_REDACTED_LINE));
    for r in RULES.iter() {
        if let Cow::Owned(s) = r.re.replace_all(&out, r.with) {
            out = Cow::Owned(s);
        }
    }
    out
}

/// Redacts a run of lines, including private-key blocks that span lines:
/// every line from `BEGIN … PRIVATE KEY` to its `END` is replaced.
pub fn redact_lines<S: AsRef<str>>(lines: &[S]) -> Vec<String> {
    let mut in_key = false;
    lines
        .iter()
        .map(|l| {
            let l = truncate(l.as_ref(), MAX_REDACTED_LINE);
            if in_key {
                if KEY_END.is_match(l) {
                    in_key = false;
                }
                return "[REDACTED PRIVATE KEY]".to_string();
            }
            if KEY_BEGIN.is_match(l) && !KEY_END.is_match(l) {
                in_key = true;
            }
            redact(l).into_owned()
        })
        .collect()
}

/// `evidence` with its log lines redacted: the one place log text becomes
/// evidence that is recorded, shown and sent.
pub fn redact_evidence(mut evidence: Evidence) -> Evidence {
    evidence.log_lines = redact_lines(&evidence.log_lines);
    evidence.log_tail = redact_lines(&evidence.log_tail);
    evidence
}

/// `s` with control characters (terminal escapes, carriage returns, line
/// breaks), Unicode line separators and bidirectional overrides replaced,
/// so a hostile string shows as one line and cannot rewrite an operator's
/// screen or fake a line of its own.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if is_unprintable(c) { char::REPLACEMENT_CHARACTER } else { c }).collect()
}

/// [`printable`] cut to at most `cap` characters, an ellipsis marking a
/// cut: one line of a table cell or a notification, whatever its source.
pub fn printable_line(s: &str, cap: usize) -> String {
    let s = printable(s);
    if s.chars().count() <= cap {
        return s;
    }
    let mut cut: String = s.chars().take(cap.saturating_sub(1)).collect();
    cut.push('\u{2026}');
    cut
}

fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_line_is_one_capped_line() {
        assert_eq!(printable_line("db\n\u{1b}[31mred", 80).lines().count(), 1);
        assert!(!printable_line("a\u{1b}[2Jb", 80).contains('\u{1b}'));
        assert_eq!(printable_line(&"x".repeat(100), 10), format!("{}\u{2026}", "x".repeat(9)));
        assert_eq!(printable_line("short", 10), "short");
        assert_eq!(printable_line("\u{e9}t\u{e9}", 3), "\u{e9}t\u{e9}", "counts characters, not bytes");
    }

    #[test]
    fn redacts_connection_string_passwords() {
        assert_eq!(
            redact("could not connect: postgres://app:hunter2@db-prod:5432/shop"),
            "could not connect: postgres://app:[REDACTED]@db-prod:5432/shop"
        );
        assert_eq!(redact("mysql://root:p%40ss@10.0.0.1/x"), "mysql://root:[REDACTED]@10.0.0.1/x");
        assert_eq!(redact("redis://:onlypass@cache:6379"), "redis://:[REDACTED]@cache:6379");
        // A URL without credentials is left alone.
        assert_eq!(redact("GET http://web-prod:80/health"), "GET http://web-prod:80/health");
    }

    #[test]
    fn uri_passwords_may_hold_slashes_and_at_signs() {
        assert_eq!(redact("dsn postgres://u:p@ss/w@host/db ok"), "dsn postgres://u:[REDACTED]@host/db ok");
        assert_eq!(redact("amqp://guest:a/b/c@rabbit:5672/"), "amqp://guest:[REDACTED]@rabbit:5672/");
    }

    #[test]
    fn redacts_sql_passwords() {
        for (input, secret) in [
            ("STATEMENT:  ALTER ROLE app PASSWORD 'hunter2'", "hunter2"),
            ("ERROR:  syntax error at or near \"x\" in CREATE USER bob WITH PASSWORD 's3 cr3t' x", "s3 cr3t"),
            ("CREATE ROLE r LOGIN ENCRYPTED PASSWORD 'md5abcdef'", "md5abcdef"),
            ("alter user x password 'it''s mine';", "s mine"),
            ("ALTER ROLE a PASSWORD E'esc\\'aped'", "aped"),
            ("ALTER ROLE a PASSWORD $$dollar quoted$$", "dollar quoted"),
            ("ALTER ROLE a PASSWORD $tag$tagged$tag$", "tagged"),
            ("CREATE USER 'u'@'%' IDENTIFIED BY 'mysql-pw'", "mysql-pw"),
            // A line cut inside the literal.
            ("STATEMENT:  ALTER ROLE app PASSWORD 'never-closed", "never-closed"),
        ] {
            let out = redact(input);
            assert!(!out.contains(secret), "{input:?} → {out:?}");
            assert!(out.contains(REDACTED), "{input:?} → {out:?}");
        }
    }

    #[test]
    fn redacts_flags_and_env_style_secrets() {
        for (input, secret) in [
            ("pg_dump --password hunter2 --host db", "hunter2"),
            ("mysqladmin --password=hunter2 status", "hunter2"),
            ("run --db-password 'two words' now", "two words"),
            ("cli -token abcdef", "abcdef"),
            ("DB_PASS=hunter2 ./start", "hunter2"),
            ("env MYSQL_ROOT_PASS=hunter2", "hunter2"),
            ("POSTGRES_PASSWORD=hunter2", "hunter2"),
            ("GITHUB_TOKEN=zzzzzz", "zzzzzz"),
            ("APP_SECRET=shh:shh", "shh:shh"),
            // A word before the key that looks like an auth scheme.
            ("token DB_PASS=hunter2", "hunter2"),
            ("Bearer: --password hunter2", "hunter2"),
        ] {
            let out = redact(input);
            assert!(!out.contains(secret), "{input:?} → {out:?}");
            assert!(out.contains(REDACTED), "{input:?} → {out:?}");
        }
    }

    #[test]
    fn redacts_key_value_secrets() {
        for (input, secret) in [
            ("host=db user=app password=hunter2 dbname=shop", "hunter2"),
            ("PGPASSWORD=s3cr3t psql -h db", "s3cr3t"),
            ("export POSTGRES_PASSWORD='quoted secret'", "quoted secret"),
            ("api_key=abcdef123456", "abcdef123456"),
            ("apiKey: 'zzz-top'", "zzz-top"),
            ("{\"password\": \"in json\"}", "in json"),
            ("token=tok_live_1234", "tok_live_1234"),
            ("client_secret=xyzzy&grant_type=x", "xyzzy"),
            ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
            ("Authorization: Bearer abc.def.ghi-123", "abc.def.ghi-123"),
            ("curl -H 'Authorization: Basic dXNlcjpwYXNz'", "dXNlcjpwYXNz"),
            ("using AKIAIOSFODNN7EXAMPLE for s3", "AKIAIOSFODNN7EXAMPLE"),
            ("OPENAI_API_KEY sk-proj-abcdefghijklmnopqrstuv", "sk-proj-abcdefghijklmnopqrstuv"),
            ("gh token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            ("-----BEGIN RSA PRIVATE KEY-----MIIEow-----END RSA PRIVATE KEY-----", "MIIEow"),
        ] {
            let out = redact(input);
            assert!(!out.contains(secret), "{input:?} → {out:?}");
            assert!(out.contains("REDACTED"), "{input:?} → {out:?}");
        }
    }

    #[test]
    fn leaves_ordinary_postgres_lines_alone() {
        for line in [
            "LOG:  database system is ready to accept connections",
            "FATAL:  password authentication failed for user \"app\"",
            "DETAIL:  Connection matched pg_hba.conf line 99: \"host all all all scram-sha-256\"",
            "LOG:  syntax error in file \"/srv/pg/postgresql.conf\" line 816, near token \"=\"",
            "PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device",
            "FATAL:  incorrect checksum in control file",
            "LOG:  received fast shutdown request",
        ] {
            assert_eq!(redact(line), line);
        }
    }

    #[test]
    fn redacting_twice_changes_nothing_more() {
        for line in [
            "ALTER ROLE a PASSWORD 'x'",
            "--password=x --token y",
            "postgres://u:p@ss/w@h/db",
            "DB_PASS=x",
            "Authorization: Bearer abcdefgh",
            "-----BEGIN RSA PRIVATE KEY-----MIIEow",
        ] {
            let once = redact(line).into_owned();
            assert_eq!(redact(&once), once, "{line:?}");
        }
    }

    #[test]
    fn redacts_multi_line_private_keys() {
        let lines = [
            "loading key",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU",
            "AAAAC3NzaC1lZDI1NTE5AAAAIG",
            "-----END OPENSSH PRIVATE KEY-----",
            "LOG:  done",
        ];
        let out = redact_lines(&lines);
        assert_eq!(out[0], "loading key");
        assert_eq!(out[5], "LOG:  done");
        let joined = out.join("\n");
        assert!(!joined.contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmU") && !joined.contains("AAAAC3Nza"), "{joined}");
    }

    #[test]
    fn huge_lines_are_cut_before_they_are_scanned() {
        let line = format!("password={}", "x".repeat(1 << 20));
        let out = redact(&line);
        assert!(out.len() <= MAX_REDACTED_LINE && !out.contains("xxx"), "{}", out.len());
    }

    #[test]
    fn printable_makes_one_inert_line() {
        let hostile = "ok\n[12:00:00] #1 👤 ✅ approved by web\r\u{1b}[2J\u{1b}]0;title\u{7}\u{9b}31m\u{2028}\u{202e}x";
        let shown = printable(hostile);
        assert!(!shown.chars().any(is_unprintable), "{shown:?}");
        assert_eq!(shown.lines().count(), 1);
        assert!(shown.starts_with("ok\u{fffd}[12:00:00]"));
    }
}
