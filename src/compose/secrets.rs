//! Secrets at rest: the controller's sealing key (and the previous ones), and
//! the registry's sealing and reseal ports over them.

use std::sync::Arc;

use async_trait::async_trait;
use berth_controller::resources::SealedValue;
use berth_controller::secrets::SecretBox;
use berth_registry::sealing::SealedSecret;

/// What seals and opens secrets at rest: `secret_key` seals, it and
/// `controller.previous_secret_keys` open.
pub fn secret_box(cfg: &berth_config::Config) -> anyhow::Result<SecretBox> {
    Ok(SecretBox::with_previous(
        &secret_key(cfg)?,
        &previous_secret_keys(cfg)?,
    ))
}

/// `controller.previous_secret_keys`, as keys.
pub fn previous_secret_keys(cfg: &berth_config::Config) -> anyhow::Result<Vec<[u8; 32]>> {
    cfg.controller
        .previous_secret_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            berth_controller::secret_key_from_hex(k)
                .map_err(|e| anyhow::anyhow!("controller.previous_secret_keys[{i}]: {e}"))
        })
        .collect()
}

/// The controller's secret-sealing key: from the config, or (redb only)
/// generated once into the data dir.
pub fn secret_key(cfg: &berth_config::Config) -> anyhow::Result<[u8; 32]> {
    if !cfg.controller.secret_key.is_empty() {
        return berth_controller::secret_key_from_hex(&cfg.controller.secret_key)
            .map_err(anyhow::Error::msg);
    }
    if cfg.meta.backend == berth_config::MetaBackend::Postgres {
        // Replicas share what is sealed: one key, from the configuration.
        anyhow::bail!(
            "meta.backend = \"postgres\" needs controller.secret_key: every replica must seal \
             with the same key, so none generates its own"
        );
    }
    let path = cfg.server.data_dir.join("controller-secret.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return berth_controller::secret_key_from_hex(&text).map_err(anyhow::Error::msg);
    }
    use rand::RngCore;
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&path)?;
    f.write_all(hex::encode(k).as_bytes())?;
    f.sync_all()?;
    Ok(k)
}

/// The registry's sealing port on the controller's `SecretBox` and key: a
/// proxy project's upstream password and a webhook's secret are sealed the
/// way an edge password is.
pub struct ControllerSealer(pub SecretBox);

fn to_registry(v: SealedValue) -> SealedSecret {
    SealedSecret {
        nonce: v.nonce,
        ciphertext: v.ciphertext,
        key_id: v.key_id,
    }
}

fn to_controller(s: &SealedSecret) -> SealedValue {
    SealedValue {
        nonce: s.nonce.clone(),
        ciphertext: s.ciphertext.clone(),
        key_id: s.key_id.clone(),
    }
}

impl berth_registry::sealing::Sealer for ControllerSealer {
    fn seal(&self, place: &str, plain: &[u8]) -> Result<SealedSecret, String> {
        let v = self.0.seal(place, plain).map_err(|e| e.to_string())?;
        Ok(to_registry(v))
    }

    fn open(&self, place: &str, sealed: &SealedSecret) -> Result<Vec<u8>, String> {
        self.0
            .open(place, &to_controller(sealed))
            .map_err(|e| e.to_string())
    }

    fn reseal(&self, place: &str, sealed: &SealedSecret) -> Result<Option<SealedSecret>, String> {
        let v = self
            .0
            .reseal(place, &to_controller(sealed))
            .map_err(|e| e.to_string())?;
        Ok(v.map(to_registry))
    }

    fn key_id(&self) -> String {
        self.0.key_id().to_string()
    }
}

/// `POST /api/v1/system/reseal` reaches the controller's records through
/// this: its store reseals them with its own keys (the same `SecretBox`).
pub struct ControllerReseal(pub Arc<dyn berth_controller::ControllerStore>);

#[async_trait]
impl berth_registry::sealing::ResealElsewhere for ControllerReseal {
    async fn reseal(&self) -> Result<berth_registry::sealing::ResealReport, String> {
        let counts = self.0.reseal().await.map_err(|e| e.to_string())?;
        Ok(counts
            .into_iter()
            .map(|(kind, c)| {
                let c = berth_registry::sealing::ResealCount {
                    resealed: c.resealed,
                    current: c.current,
                    failed: c.failed,
                };
                (kind, c)
            })
            .collect())
    }
}
