//! `berth doctor IMAGE`: checks the whole pull path of one image step by step (reference, host
//! config, DNS, TCP, TLS, /v2/, auth challenge, token, manifest, one ranged blob GET following
//! redirects) with the credential and trust flags of `berth pull`, and prints a checklist with
//! the first failing step, its cause and the fix. The checks live in `registry::doctor`; this
//! module turns flags into a client and credential attempts and formats the report. It must
//! never print a secret. Exit status 0 only when a pull would succeed.

use clap::Args;
use registry::doctor::{Attempt, Outcome, Report};

use crate::cmd::pull::{Output, RegistryArgs};

/// `berth doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Image reference, e.g. registry.example.com:5000/team/app:v1
    pub image: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let client = args.registry.client()?;
    let platform = args.registry.platform()?;
    // an unparsable reference is the checklist's first failure, not an early error
    let attempts = if oci::Reference::parse_normalized(&args.image).is_ok() {
        args.registry
            .attempts(&args.image)?
            .into_iter()
            .map(|a| Attempt {
                label: a.label,
                credential: a.credential,
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = registry::doctor::diagnose(&client, &args.image, &attempts, &platform).await;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "image": report.image,
                "passed": report.passed(),
                "firstFailure": report.first_failure().map(|s| s.name),
                "steps": report.steps,
            }))?
        ),
        Output::Text => print!("{}", render(&report)),
    }
    Ok(if report.passed() { 0 } else { 1 })
}

/// The checklist as text.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Checking the pull path of {}", r.image);
    for step in &r.steps {
        let host = match (&step.host, step.outcome) {
            (Some(h), Outcome::Ok | Outcome::Fail) => format!("[{h}] "),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  {:<8} {:<15} {host}{}",
            step.outcome.label(),
            step.name,
            step.detail
        );
    }
    match r.first_failure() {
        None => {
            let _ = writeln!(s, "All checks passed: a pull of {} would succeed.", r.image);
        }
        Some(f) => {
            let _ = writeln!(
                s,
                "First failing step: {}{}",
                f.name,
                f.host
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            );
            let _ = writeln!(s, "Cause: {}", f.detail);
            if let Some(fix) = &f.fix {
                let _ = writeln!(s, "Fix: {fix}");
            }
        }
    }
    s
}
