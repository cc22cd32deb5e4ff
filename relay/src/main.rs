//! `tether-relay`: pairs host agents and clients and forwards what they send without being able to
//! read it, and serves the web app (built into the binary). Stateless: a restarted relay needs
//! nothing back; hosts and clients reconnect. Several relays can be one service (`--redis`,
//! `cluster`): what they share lives in Redis and lapses on its own.

mod admission;
mod cli;
mod cluster;
mod head_deadline;
mod hub;
mod tls;
mod turn;
mod web;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;
use head_deadline::HeadDeadlineListener;

#[derive(Parser)]
#[command(name = "tether-relay", version, about = "Tether relay: pairs hosts and browsers, forwards only ciphertext")]
struct Args {
    /// Address to listen on (port 0 picks a free one; the URL printed says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve the web app from this directory (Trunk's dist/) instead of the one built into this
    /// binary.
    #[arg(long)]
    web_root: Option<PathBuf>,
    /// Most clients connected to one host at once.
    #[arg(long, default_value_t = 64)]
    max_clients_per_host: usize,
    /// Directory of tether binaries (`tether-<os>-<arch>`) offered through /cli.
    #[arg(long)]
    binaries: Option<PathBuf>,
    /// The URL clients use to reach this relay (baked into /cli); default: from the request.
    #[arg(long)]
    public_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); without it, plain HTTP for a TLS proxy in front.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Behind a reverse proxy: take each client's address from the last `X-Forwarded-For` entry
    /// (limits are per source address). Only with a proxy that sets it.
    #[arg(long)]
    trust_proxy: bool,
    /// Most bytes (MiB) the relay holds queued for all clients together; the client whose
    /// bytes would go over it is dropped (each client may have at most 8 MiB queued).
    #[arg(long, default_value_t = 512)]
    max_queued_mib: usize,
    /// Most WebSocket connections one IP address may open per minute.
    #[arg(long, default_value_t = 600)]
    max_connects_per_minute: u32,
    /// A client must authenticate with its host within this many seconds of connecting.
    #[arg(long, default_value_t = 30)]
    handshake_timeout_secs: u64,
    /// Keep every connection on this relay: hosts are told not to upgrade to WebRTC.
    #[arg(long, conflicts_with_all = ["turn_url", "turn_secret_file"])]
    no_webrtc: bool,
    /// A TURN server for WebRTC upgrades (`turn:HOST:PORT`, `turns:HOST:PORT`; repeatable),
    /// e.g. coturn with `use-auth-secret`. Hosts get short-lived credentials for it.
    #[arg(long, requires = "turn_secret_file")]
    turn_url: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`), on the file's
    /// first line.
    #[arg(long, requires = "turn_url")]
    turn_secret_file: Option<PathBuf>,
    /// Be one node of several that share routing through this Redis (`redis://HOST:PORT`): a
    /// client of a host held by another node is carried there. Needs --node-secret-file.
    #[arg(long, requires = "node_secret_file")]
    redis: Option<String>,
    /// How the other nodes reach this one (`http://ADDR:PORT`, internal; never shown to
    /// browsers). Default: this relay's own listening address, when it is not a wildcard.
    #[arg(long, requires = "redis")]
    node_url: Option<String>,
    /// A secret every node shares, on the file's first line (16 characters at least): nodes
    /// prove themselves with it on each other's internal endpoint.
    #[arg(long, requires = "redis")]
    node_secret_file: Option<PathBuf>,
}

/// Everything the handlers share.
pub struct AppState {
    web: web::WebApp,
    hub: Arc<hub::Hub>,
    /// This relay's part in a service of several nodes (`--redis`).
    cluster: Option<cluster::Cluster>,
    admission: admission::Admission,
    binaries: Option<cli::Binaries>,
    public_url: Option<String>,
    /// This relay terminates TLS itself (so its own origin is `https://`).
    tls: bool,
    /// What hosts may use to leave the relay for a direct path (`--no-webrtc`, `--turn-*`).
    pub webrtc: WebrtcPolicy,
}

impl AppState {
    /// Whether `host_id` is registered here or, for one node of several, on any node.
    pub async fn host_online(&self, host_id: &str) -> bool {
        if self.hub.is_online(host_id) {
            return true;
        }
        match &self.cluster {
            Some(cluster) => matches!(cluster.routing.owner(host_id).await, Ok(Some(_))),
            None => false,
        }
    }
}

/// This relay's answer to "may connections move to WebRTC, and with which TURN server?".
pub struct WebrtcPolicy {
    pub allowed: bool,
    pub turn: Option<turn::TurnServer>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(error) = run(args).await {
        eprintln!("tether-relay: {error}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let web = match &args.web_root {
        Some(root) => web::WebApp::load(root)?,
        None => web::WebApp::embedded()?,
    };
    let (files, bytes) = web.size();
    raise_open_file_limit();
    let binaries = args.binaries.as_deref().map(cli::Binaries::load).transpose()?;
    if let Some(binaries) = &binaries {
        eprintln!("offering {} through /cli", binaries.names().join(", "));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    // It goes into the /cli script and the app: parsed like any relay URL (no user name, no
    // query, a real host), so no request can make it say something else.
    let public_url = args.public_url.map(|u| u.trim_end_matches('/').to_owned());
    if let Some(url) = &public_url {
        tether_protocol::identity::relay_ws_url(url, "/").map_err(|e| format!("--public-url: {e}"))?;
    }
    let turn = match &args.turn_secret_file {
        Some(file) => Some(turn::TurnServer::load(args.turn_url.clone(), file)?),
        None => None,
    };
    match (&turn, args.no_webrtc) {
        (_, true) => eprintln!("WebRTC upgrades off (--no-webrtc): every connection stays on the relay"),
        (Some(turn), _) => eprintln!("WebRTC upgrades on, TURN at {}", turn.urls().join(", ")),
        (None, _) => eprintln!("WebRTC upgrades on, without TURN"),
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| format!("no local address: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Where this node is reached when the operator does not say: its own address, if that is
    // one (a wildcard is no address).
    let own_url = (!local.ip().is_unspecified()).then(|| format!("{scheme}://{local}"));
    let hub = Arc::new(hub::Hub::new(args.max_clients_per_host, args.max_queued_mib.saturating_mul(1 << 20)));
    let cluster = match (&args.redis, &args.node_secret_file) {
        (Some(redis), Some(secret)) => {
            let node_url = args
                .node_url
                .clone()
                .or_else(|| own_url.clone().filter(|_| tls.is_none()))
                .ok_or("--redis needs --node-url (this relay listens on a wildcard address or with TLS)")?;
            cluster::node_ws_url(&node_url, "x").map_err(|e| format!("--node-url: {e}"))?;
            let public = public_url.clone().or(own_url.clone());
            let routing = Arc::new(cluster::routing::Routing::new(redis, node_url.clone(), public)?);
            tokio::spawn(routing.clone().run(hub.clone()));
            eprintln!("cluster node {node_url}, routing through {redis}");
            Some(cluster::Cluster { routing, secret: cluster::NodeSecret::load(secret)? })
        }
        _ => None,
    };
    let app = Arc::new(AppState {
        web,
        hub,
        cluster,
        admission: admission::Admission::new(
            args.max_connects_per_minute,
            std::time::Duration::from_secs(args.handshake_timeout_secs),
            args.trust_proxy,
        ),
        binaries,
        public_url,
        tls: tls.is_some(),
        webrtc: WebrtcPolicy { allowed: !args.no_webrtc, turn },
    });
    // The first line of stdout is the URL; scripts and tests read it to learn the port.
    println!("tether-relay listening on {scheme}://{local}/");
    match &args.web_root {
        Some(root) => eprintln!("serving the web app from {} ({files} files, {bytes} bytes)", root.display()),
        None => eprintln!("serving the web app built into this binary ({files} files, {bytes} bytes)"),
    }

    // Interactive traffic: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per keystroke.
    // (`tap_io` also gives handlers the peer's address through ConnectInfo.) Every connection
    // must send its first request head within `head_deadline::HEAD_TIMEOUT`.
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config).map_err(|e| format!("TLS listener: {e}"))?;
            let listener = ListenerExt::tap_io(HeadDeadlineListener(listener), |io| {
                let _ = io.get_ref().get_ref().0.set_nodelay(true);
            });
            axum::serve(listener, service).with_graceful_shutdown(shutdown_signal()).await
        }
        None => {
            let listener = ListenerExt::tap_io(HeadDeadlineListener(listener), |io| {
                let _ = io.get_ref().set_nodelay(true);
            });
            axum::serve(listener, service).with_graceful_shutdown(shutdown_signal()).await
        }
    };
    served.map_err(|e| format!("server failed: {e}"))
}

pub fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ws/host", get(ws::host_endpoint))
        .route("/ws/client/{host_id}", get(ws::client_endpoint))
        .route("/ws/presence", get(ws::presence_endpoint))
        .route("/internal/client/{host_id}", get(ws::internal_client_endpoint))
        .route("/cli", get(cli_script))
        .route("/bin/{name}", get(cli_binary))
        .fallback(get(serve_web))
        .with_state(app)
}

async fn cli_script(State(app): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    use axum::response::IntoResponse;
    let Some(binaries) = &app.binaries else {
        return (axum::http::StatusCode::NOT_FOUND, "this relay offers no binaries (--binaries)\n").into_response();
    };
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
    match cli::origin(app.public_url.as_deref(), host, app.tls) {
        Some(origin) => binaries.script(&origin),
        None => (axum::http::StatusCode::BAD_REQUEST, "bad Host header; the relay operator can set --public-url\n")
            .into_response(),
    }
}

async fn cli_binary(
    State(app): State<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    use axum::response::IntoResponse;
    match &app.binaries {
        Some(binaries) => binaries.binary(&name).await,
        None => (axum::http::StatusCode::NOT_FOUND, "no binaries\n").into_response(),
    }
}

async fn serve_web(State(app): State<Arc<AppState>>, uri: Uri) -> Response {
    app.web.respond(uri.path())
}

/// Every socket is a file: lift the soft limit on open files to the hard one, so a relay holding
/// thousands of idle hosts is not stopped at a default of 1024.
fn raise_open_file_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
