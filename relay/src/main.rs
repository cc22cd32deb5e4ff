//! `tether-relay`: pairs host agents and clients and forwards what they send without being able to
//! read it. For now it serves the web app and a health check; routing arrives with pairing.

mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use clap::Parser;

#[derive(Parser)]
#[command(name = "tether-relay", version, about = "Tether relay: pairs hosts and browsers, forwards only ciphertext")]
struct Args {
    /// Address to listen on (port 0 picks a free one; the URL printed says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the built web app (Trunk's dist/).
    #[arg(long, env = "TETHER_WEB_ROOT", default_value = "dist")]
    web_root: PathBuf,
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
    let app = Arc::new(web::WebApp::load(&args.web_root)?);
    let (files, bytes) = app.size();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| format!("no local address: {e}"))?;
    // The first line of stdout is the URL; scripts and tests read it to learn the port.
    println!("tether-relay listening on http://{local}/");
    eprintln!("serving web app from {} ({files} files, {bytes} bytes)", args.web_root.display());

    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(get(serve_web))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server failed: {e}"))
}

async fn serve_web(State(app): State<Arc<web::WebApp>>, uri: Uri) -> Response {
    app.respond(uri.path())
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
