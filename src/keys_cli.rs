//! `berth token-key rotate`: a new token signing key.
//!
//! On PostgreSQL the key set is shared: the new key is published to sign
//! only `KEY_PUBLISH` later (every replica re-reads the set well within
//! that), and the key it replaces keeps verifying until the last token it
//! signed expires, so no client notices. The embedded registry keeps its
//! key in `<data_dir>/token.key`, read at start: the registry must be
//! stopped; tokens issued before the rotation stop verifying when it
//! starts again, and clients simply ask for new ones.

use anyhow::{bail, Context};
use berth_config::{Config, MetaBackend};
use berth_registry::meta::pg;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum TokenKeyCmd {
    /// Replace the key that signs registry tokens (with overlap on PostgreSQL).
    #[command(
        after_help = "Examples:\n  berth token-key rotate --config /etc/berth/replica.toml   # PostgreSQL: replicas switch within a minute\n  berth token-key rotate --data-dir /var/lib/berth          # embedded: stop the registry first"
    )]
    Rotate {
        /// The data directory of an embedded registry [default: from config].
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
}

pub async fn token_key(cfg: &Config, cmd: TokenKeyCmd) -> anyhow::Result<()> {
    let TokenKeyCmd::Rotate { data_dir } = cmd;
    match cfg.meta.backend {
        MetaBackend::Postgres => {
            let pool = pg::connect(&cfg.meta.url, 2)?;
            pg::migrate(&pool, &[pg::MIGRATIONS, pg::ACCOUNT_MIGRATIONS]).await?;
            let keys = pg::PgTokenKeys::new(pool, cfg.auth.token_ttl);
            // The first key, if no replica ever started, then its successor.
            keys.load().await?;
            keys.rotate(berth_registry::replicas::KEY_PUBLISH).await?;
            println!(
                "published a new token signing key: replicas sign with it from {} s on; the \
                 old one verifies until its tokens expire",
                berth_registry::replicas::KEY_PUBLISH.as_secs()
            );
            Ok(())
        }
        MetaBackend::Redb => {
            let dir = data_dir.unwrap_or_else(|| cfg.server.data_dir.clone());
            // Opening the database proves no registry runs on this directory.
            let db = dir.join("berth.redb");
            if !db.exists() {
                bail!("no registry data at {}", dir.display());
            }
            let meta =
                berth_registry::meta::RedbMeta::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
            let path = dir.join("token.key");
            let fresh = dir.join("token.key.new");
            let _ = std::fs::remove_file(&fresh);
            berth_registry::auth::token::TokenKey::load_or_create(&fresh)
                .with_context(|| format!("writing {}", fresh.display()))?;
            std::fs::rename(&fresh, &path)
                .with_context(|| format!("replacing {}", path.display()))?;
            drop(meta);
            println!(
                "wrote a new token signing key to {}: tokens issued before stop verifying when \
                 the registry starts; clients ask for new ones",
                path.display()
            );
            Ok(())
        }
    }
}
