//! Workload 7, idle part (issue 22, item 4): resident memory of processes
//! that have just started and serve nothing: `berth serve` on PostgreSQL
//! (`meta.backend = "postgres"`, a server from the test kit), and, when
//! workload 6 (which measures it on every cache it starts) is not selected,
//! `berth edge` against distribution in proxy mode. `VmRSS` and `RssAnon`
//! (without the pages of the mapped executable) a second after the process
//! answered its readiness check, once per run. The registry with the
//! embedded defaults is measured at the start of the bench (`main.rs`).

use std::time::Duration;

use berth_testkit::berth as kit_berth;
use berth_testkit::postgres::{self, Postgres};

use crate::report::{Better, Row, Target};
use crate::setup::{berth_bin, Kind};
use crate::{procstat, Bench};

/// How long a process sits before it is measured (as at the bench's start).
const SETTLE: Duration = Duration::from_secs(1);

fn rss_rows(what: &str) -> (Row, Row) {
    (
        Row::new(
            "7. memory",
            &format!("idle RSS after start ({what})"),
            "MB",
            Better::Lower,
        ),
        Row::new(
            "7. memory",
            &format!("idle anonymous RSS after start ({what}; RssAnon)"),
            "MB",
            Better::Lower,
        ),
    )
}

fn measure(pid: u32, kind: Kind, rss: &mut Row, anon: &mut Row) {
    rss.push(kind, procstat::rss(pid).unwrap_or(0) as f64 / 1e6);
    anon.push(kind, procstat::rss_anon(pid).unwrap_or(0) as f64 / 1e6);
}

/// `berth serve` on a database of its own on `pg`.
fn registry_on_postgres(b: &Bench, pg: &Postgres, rss: &mut Row, anon: &mut Row) {
    let url = pg.database();
    let key = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let mut env: Vec<(&str, &str)> = vec![
        ("BERTH_META_BACKEND", "postgres"),
        ("BERTH_META_URL", url.as_str()),
        ("BERTH_CONTROLLER_SECRET_KEY", key.as_str()),
    ];
    env.extend(
        b.cfg
            .berth_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let registry = kit_berth::registry_with(berth_bin(), &[], &env);
    std::thread::sleep(SETTLE);
    let pid = registry.server.pid().expect("berth is running");
    measure(pid, Kind::Berth, rss, anon);
}

pub fn run(b: &mut Bench) {
    match postgres::available() {
        false => b.progress("7. idle on PostgreSQL skipped: no PostgreSQL (initdb, postgres)"),
        true => {
            let pg = Postgres::start();
            let (mut rss, mut anon) = rss_rows("registry on PostgreSQL");
            for run in 0..b.cfg.runs {
                b.progress(&format!("7. idle registry on PostgreSQL, run {}", run + 1));
                registry_on_postgres(b, &pg, &mut rss, &mut anon);
            }
            b.row(rss.note("berth only: distribution has no PostgreSQL backend"));
            b.row(anon.note("berth only"));
        }
    }
    if b.cfg.wants(6) {
        return;
    }
    let (rss, anon) = rss_rows("edge: berth edge vs distribution proxy");
    let mut rss = rss.target(Target::BerthBelow(12.0, "12 MB"));
    let mut anon = anon.target(Target::BerthBelow(4.0, "4 MB"));
    for run in 0..b.cfg.runs {
        b.progress(&format!("7. idle edge, run {}", run + 1));
        for kind in b.order(run) {
            let origin = b.regs.target(kind);
            let cache = crate::edge::Cache::start(kind, &origin.base_url(), &b.cfg.berth_env);
            std::thread::sleep(SETTLE);
            measure(cache.pid(), kind, &mut rss, &mut anon);
        }
    }
    b.row(rss);
    b.row(anon);
}
