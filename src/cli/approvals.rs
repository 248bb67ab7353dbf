//! `opsguard approvals list | approve ID | reject ID`: answers the approval
//! requests of a running `watch --approve web` from a terminal, through its
//! console's JSON API ([`opsguard::console::api`]) with the console's token
//! as a Bearer header. The token goes over plain HTTP only to loopback
//! unless `--insecure-http` says so, as `watch` serves it.

use std::process::ExitCode;
use std::time::Duration;

use opsguard::console::api::{Answered, ApiError, ApprovalAnswer, ApprovalList, PendingApproval};
use opsguard::redact::{printable, printable_line};
use reqwest::{Method, StatusCode, Url};

use super::args::{AnswerArgs, ApprovalsAction, ApprovalsArgs};

/// The console as reached from here: its API's base and the token.
struct ConsoleClient {
    http: reqwest::Client,
    base: Url,
    token: String,
}

pub async fn run(args: ApprovalsArgs) -> Result<ExitCode, String> {
    let client = ConsoleClient::new(&args)?;
    match args.action {
        ApprovalsAction::List { json } => {
            let list = client.list().await?;
            if json {
                let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                print!("{}", table(&list.approvals));
            }
        }
        ApprovalsAction::Approve(a) => client.answer(a, true).await?,
        ApprovalsAction::Reject(a) => client.answer(a, false).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `--token`, else OPSGUARD_CONSOLE_TOKEN (clap reads both), else the
/// token file `watch` wrote.
fn token(args: &ApprovalsArgs) -> Result<String, String> {
    if let Some(t) = args.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    match std::fs::read_to_string(&args.token_file) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(format!("the token file {} is empty", args.token_file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "no console token: give --token, set OPSGUARD_CONSOLE_TOKEN, or point --token-file at the file \
             `watch --approve web` wrote ({} does not exist)",
            args.token_file.display()
        )),
        Err(e) => Err(format!("--token-file {}: {e}", args.token_file.display())),
    }
}

/// Refuses to send the token in the clear beyond this host.
fn check_url(url: &Url, insecure_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            if is_loopback(url) || insecure_http {
                Ok(())
            } else {
                Err(format!(
                    "{url} is plain HTTP beyond loopback: the token would cross the network in the clear \
                     (use https, or --insecure-http if you mean it)"
                ))
            }
        }
        other => Err(format!("the console URL must be http or https, not {other}:")),
    }
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
    ip.map_or(host.eq_ignore_ascii_case("localhost"), |ip| ip.is_loopback())
}

impl ConsoleClient {
    fn new(args: &ApprovalsArgs) -> Result<ConsoleClient, String> {
        let base = Url::parse(&args.url).map_err(|e| format!("--url {:?}: {e}", args.url))?;
        check_url(&base, args.insecure_http)?;
        let token = token(args)?;
        // The token goes to the console given, never on to where a redirect points.
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(args.http_timeout.max(1)));
        // A console on this host is reached directly, never through a
        // proxy the environment names (which would see a plain-HTTP token).
        if is_loopback(&base) {
            http = http.no_proxy();
        }
        if let Some(path) = &args.cacert {
            let pem = std::fs::read(path).map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(ConsoleClient { http, base, token })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&ApprovalAnswer>,
    ) -> Result<T, String> {
        let url = self.base.join(path).map_err(|e| format!("{path}: {e}"))?;
        let mut req = self.http.request(method, url.clone()).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach the console at {}: {e}", self.base))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("reading the console's answer: {e}"))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| format!("{url} answered {status} with something that is not the approvals API: {e}"));
        }
        Err(match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => refusal(status, &e),
            Err(_) => format!("{url} answered {status}: is this an OpsGuard console (watch --approve web)?"),
        })
    }

    async fn list(&self) -> Result<ApprovalList, String> {
        self.call(Method::GET, "/api/v1/approvals", None).await
    }

    async fn answer(&self, a: AnswerArgs, approve: bool) -> Result<(), String> {
        let (digest, shown) = match a.digest {
            Some(d) => (d, None),
            None => {
                let list = self.list().await?;
                let Some(p) = list.approvals.into_iter().find(|p| p.id == a.id) else {
                    return Err(format!(
                        "no approval request {} is waiting (answered, expired or never asked): \
                         see `opsguard approvals list`",
                        a.id
                    ));
                };
                (p.digest.clone(), Some(p))
            }
        };
        let approver = a.approver.or_else(whoami).unwrap_or_else(|| "cli".to_string());
        let body = ApprovalAnswer { answer: if approve { "approve" } else { "reject" }.into(), digest, approver };
        let done: Answered = self.call(Method::POST, &format!("/api/v1/approvals/{}", a.id), Some(&body)).await?;
        match shown {
            Some(p) => println!(
                "request {} {}: {} on {} (incident #{})",
                done.id,
                printable(&done.status),
                printable(&p.action),
                printable(&p.container),
                p.incident
            ),
            None => println!("request {} {}", done.id, printable(&done.status)),
        }
        Ok(())
    }
}

fn whoami() -> Option<String> {
    ["USER", "LOGNAME"].iter().find_map(|k| std::env::var(k).ok()).filter(|u| !u.trim().is_empty())
}

/// A refusal as a sentence, with what to do about the common ones.
fn refusal(status: StatusCode, e: &ApiError) -> String {
    let hint = match (status, e.error.as_str()) {
        (_, "stale_digest") => " (run `opsguard approvals list` and review it again)",
        (StatusCode::UNAUTHORIZED, _) => " (check --token or OPSGUARD_CONSOLE_TOKEN)",
        _ => "",
    };
    format!("the console refused ({status}, {}): {}{hint}", printable(&e.error), printable(&e.message))
}

/// The pending requests as a table, then each one's evidence.
fn table(approvals: &[PendingApproval]) -> String {
    use std::fmt::Write as _;
    if approvals.is_empty() {
        return "No approval request is waiting.\n".into();
    }
    let mut out = String::new();
    let rows: Vec<[String; 6]> = approvals
        .iter()
        .map(|p| {
            let left = p.expires_in_secs;
            [
                p.id.to_string(),
                format!("#{}", p.incident),
                printable_line(&p.container, 24),
                printable_line(&p.alarm, 20),
                printable_line(&p.action, 40),
                format!("{}m{:02}s", left / 60, left % 60),
            ]
        })
        .collect();
    let head = ["ID", "INCIDENT", "CONTAINER", "ALARM", "ACTION", "EXPIRES IN"];
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    out += &line(&head.map(String::from));
    for r in &rows {
        out += &line(r);
    }
    for p in approvals {
        let _ = writeln!(out, "\nRequest {} (incident #{}): {}", p.id, p.incident, printable(&p.action));
        let _ = writeln!(out, "  alarm: {} on {}", printable(&p.alarm), printable(&p.container));
        if let Some(c) = &p.root_cause {
            let _ = writeln!(out, "  root cause: {}", printable(c));
        }
        for (label, value) in &p.evidence {
            let _ = writeln!(out, "  {}: {}", printable(label), printable(value));
        }
        if let Some(b) = &p.bound_to {
            let _ = writeln!(out, "  for {}; void if it runs or crashes again", printable(b));
        }
        if let Some(d) = &p.diagnosis {
            let _ = writeln!(
                out,
                "  LLM diagnosis: {} (untrusted model output; OpsGuard only checked that the quote is in the evidence)",
                printable(&d.category)
            );
            let _ = writeln!(out, "    quote: {}", printable(&d.quote));
            let _ = writeln!(out, "    reason: {}", printable(&d.reason));
        }
        if !p.log_lines.is_empty() {
            out += "  matching log lines:\n";
            for l in &p.log_lines {
                let _ = writeln!(out, "  | {}", printable(l));
            }
        }
        let _ = writeln!(out, "  requested {}, deadline {}", printable(&p.requested_at), printable(&p.deadline));
        let _ = writeln!(out, "  digest {}", printable(&p.digest));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_the_clear_only_to_loopback_or_when_told() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(check_url(&url("http://127.0.0.1:8990"), false).is_ok());
        assert!(check_url(&url("http://[::1]:8990/login"), false).is_ok());
        assert!(check_url(&url("http://localhost:8990"), false).is_ok());
        assert!(check_url(&url("https://ops.example:8990"), false).is_ok());
        let e = check_url(&url("http://10.0.0.5:8990"), false).unwrap_err();
        assert!(e.contains("in the clear"), "{e}");
        assert!(check_url(&url("http://10.0.0.5:8990"), true).is_ok());
        assert!(check_url(&url("ftp://127.0.0.1/"), true).is_err());
    }

    #[test]
    fn table_cells_are_one_inert_line_and_bounded() {
        assert_eq!(printable_line("db\n\u{1b}[31mred", 80).lines().count(), 1);
        assert!(!printable_line("a\u{1b}[2Jb", 80).contains('\u{1b}'));
        assert_eq!(printable_line(&"x".repeat(100), 10).chars().count(), 10);
    }
}
