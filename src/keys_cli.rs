//! `berth token-keys list|rotate`: the keys bearer tokens are signed with;
//! `berth reseal`: every sealed value sealed again with the current
//! sealing key. Both over the admin API (system administrators).
//!
//! Owns: the commands' arguments, the paths they call and how the answers
//! are printed. Must not touch: which keys sign, verify, seal or open (the
//! server decides).

use anyhow::{bail, Context};
use berth_config::Config;
use reqwest::Method;
use serde_json::Value;

use crate::cli::{print_json, send, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum TokenKeysCmd {
    /// The keys that verify tokens now: the one signing, one published to
    /// sign later, those retiring (never a secret).
    #[command(after_help = "Example:\n  berth token-keys list")]
    List {
        /// Print the server's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Publish a new signing key. Tokens already issued keep working until
    /// they expire; with several replicas the new key signs once every
    /// replica has read it (6 x auth.token_key_refresh).
    #[command(after_help = "Example:\n  berth token-keys rotate")]
    Rotate {
        /// Print the server's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn token_keys(cfg: &Config, cmd: TokenKeysCmd) -> anyhow::Result<()> {
    let (v, json) = match cmd {
        TokenKeysCmd::List { json, conn } => (
            send(conn.request(cfg, Method::GET, "/api/v1/system/token-keys"))
                .await
                .context("cannot list the token keys")?,
            json,
        ),
        TokenKeysCmd::Rotate { json, conn } => {
            let v = send(conn.request(cfg, Method::POST, "/api/v1/system/token-keys/rotate"))
                .await
                .context("cannot rotate the token key")?;
            if !json {
                println!(
                    "published token key {}; it signs from {}",
                    v["published"]["id"],
                    time(&v["published"]["signs_from"])
                );
            }
            (v, json)
        }
    };
    if json {
        print_json(&v);
        return Ok(());
    }
    println!(
        "{:<6} {:<10} {:<22} {:<22} RETIRES AT",
        "ID", "STATE", "CREATED", "SIGNS FROM"
    );
    for k in v["keys"].as_array().into_iter().flatten() {
        let here = if k["id"] == v["signing_here"] {
            "  (signs here)"
        } else {
            ""
        };
        println!(
            "{:<6} {:<10} {:<22} {:<22} {}{here}",
            k["id"],
            k["state"].as_str().unwrap_or(""),
            time(&k["created"]),
            time(&k["signs_from"]),
            time(&k["retires_at"]),
        );
    }
    Ok(())
}

/// Seconds since the epoch as an RFC 3339 time; `-` when absent.
fn time(v: &Value) -> String {
    match v.as_u64() {
        Some(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
        None => "-".into(),
    }
}

/// `berth reseal`.
#[derive(clap::Args, Debug)]
pub struct ResealArgs {
    /// Print the server's JSON answer instead of counts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Asks the running registry to seal every sealed value again with
/// `controller.secret_key`; fails when some value no configured key opens.
pub async fn reseal(cfg: &Config, a: ResealArgs) -> anyhow::Result<()> {
    let v = send(a.conn.request(cfg, Method::POST, "/api/v1/system/reseal"))
        .await
        .context("cannot reseal")?;
    if a.json {
        print_json(&v);
    } else {
        println!(
            "{:<24} {:>9} {:>9} {:>7}",
            "KIND", "RESEALED", "CURRENT", "FAILED"
        );
        for (kind, c) in v["kinds"].as_object().into_iter().flatten() {
            println!(
                "{kind:<24} {:>9} {:>9} {:>7}",
                c["resealed"],
                c["current"],
                c["failed"].as_array().map_or(0, Vec::len)
            );
        }
        println!(
            "resealed {}, already current {}, failed {} (sealing key {})",
            v["resealed"],
            v["current"],
            v["failed"],
            v["key_id"].as_str().unwrap_or("?")
        );
    }
    let failed = v["failed"].as_u64().unwrap_or(0);
    if failed > 0 {
        for (_, c) in v["kinds"].as_object().into_iter().flatten() {
            for why in c["failed"].as_array().into_iter().flatten() {
                eprintln!("  {}", why.as_str().unwrap_or(""));
            }
        }
        bail!(
            "{failed} sealed value(s) cannot be opened with controller.secret_key or \
             controller.previous_secret_keys; they were left as they are: keep (or put back) \
             the key that sealed them in controller.previous_secret_keys and run berth reseal \
             again before removing any key"
        );
    }
    Ok(())
}
