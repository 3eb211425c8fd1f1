//! A routing table served from memory while another task edits it in etcd.
//!
//! The table lives under `/routes/` in etcd: `/routes/<path>` holds
//! `<color> <address>`. An *editor* task (standing in for a deploy tool in
//! another process) flips every route between the blue and the green fleet,
//! one etcd transaction per flip. A *router* resolves requests from its
//! replica — no network on the request path — and checks that no version ever
//! mixes the two colors: each transaction arrives whole.
//!
//! Needs an etcd on 127.0.0.1 (any other endpoint in `ETCD_ENDPOINT`). It
//! deletes everything under `/routes/` there first: use a throwaway etcd, as
//! below.
//!
//! ```sh
//! etcd --data-dir "$(mktemp -d)" &
//! cargo run --features etcd --example etcd_routes
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, Txn, TxnOp};
use readmostly::replica::Replica;

/// A backend a path routes to, decoded from `"<color> <address>"`.
#[derive(Clone, Debug)]
struct Backend {
    color: Arc<str>,
    address: Arc<str>,
}

fn decode(_path: &str, raw: &[u8]) -> Result<Backend, Box<dyn Error + Send + Sync>> {
    let text = std::str::from_utf8(raw)?;
    let (color, address) = text
        .split_once(' ')
        .ok_or_else(|| format!("want \"<color> <address>\", got {text:?}"))?;
    Ok(Backend {
        color: color.into(),
        address: address.into(),
    })
}

const PATHS: [&str; 4] = ["/", "/api", "/api/users", "/static"];

/// The map key of a request path: the etcd key is `/routes` + path, and the
/// replica of `/routes/` drops that prefix.
fn key_of(path: &str) -> &str {
    &path[1..]
}
const FLIPS: usize = 20;

/// One transaction that points every path at `color`'s fleet.
fn flip_to(color: &str) -> Txn {
    let ops: Vec<TxnOp> = PATHS
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let address = if color == "blue" { 10 } else { 20 };
            let value = format!("{color} 10.0.{address}.{i}:8080");
            TxnOp::put(format!("/routes{path}"), value, None)
        })
        .collect();
    Txn::new().and_then(ops)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let endpoint =
        std::env::var("ETCD_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:2379".into());
    let mut client = Client::connect([endpoint.as_str()], None).await?;
    client
        .delete("/routes/", Some(DeleteOptions::new().with_prefix()))
        .await?;
    client.txn(flip_to("blue")).await?;

    let routes = Replica::builder("/routes/")
        .decode(decode)
        .start(client.clone())
        .await?;
    println!(
        "loaded {} routes at etcd revision {}",
        routes.map().len(),
        routes.revision()
    );

    // The editor: another etcd client, one transaction per flip.
    let mut editor = client.clone();
    let edits = tokio::spawn(async move {
        for flip in 0..FLIPS {
            let color = if flip % 2 == 0 { "green" } else { "blue" };
            editor.txn(flip_to(color)).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let response = editor.get("/routes/", None).await?;
        Ok::<i64, etcd_client::Error>(response.header().map_or(0, |h| h.revision()))
    });

    // The router: each new version, resolve every path from memory.
    let mut watcher = routes.map().watch();
    // The first version is the initial read; each flip publishes one more.
    // A watcher may skip versions published in quick succession: it always
    // returns the newest.
    let mut seen = 0;
    while seen < 1 + FLIPS as u64 {
        let table = watcher.changed().await;
        seen = table.version();
        let colors: Vec<&str> = PATHS
            .iter()
            .filter_map(|path| table.get(key_of(path)).map(|b| &*b.color))
            .collect();
        assert!(
            colors.len() == PATHS.len() && colors.windows(2).all(|w| w[0] == w[1]),
            "version {} mixes fleets: {colors:?}",
            table.version()
        );
        let api = table.get(key_of("/api")).map(|b| b.address.clone());
        println!(
            "version {:>2}: all {} paths on {:<5}  GET /api -> {}",
            table.version(),
            colors.len(),
            colors[0],
            api.as_deref().unwrap_or("no route"),
        );
    }
    let last = edits.await??;
    let final_table = routes.wait_for_revision(last).await?;
    println!(
        "{FLIPS} flips, every version whole; replica at revision {} with {} routes",
        final_table.revision(),
        final_table.len()
    );
    routes.shutdown().await;
    Ok(())
}
