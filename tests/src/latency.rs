//! A TCP proxy that holds every byte for a fixed time each way: a slow network on loopback, for
//! measuring what each hop of a keystroke's round trip costs when the path is far away. (`tc
//! netem` would do it in the kernel; this machine's kernel has no netem, so it is done here.)
//! Order and throughput are kept: bytes are only delayed, never reordered or paced.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes read at a time on each side.
const READ_BYTES: usize = 64 * 1024; // 64 KiB

pub struct DelayProxy {
    /// `127.0.0.1:PORT`: connect here instead of the target.
    pub addr: String,
    _runtime: tokio::runtime::Runtime,
}

impl DelayProxy {
    /// Proxy to `target` (`host:port`), holding each direction's bytes for `one_way`.
    pub fn start(target: &str, one_way: Duration) -> DelayProxy {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("proxy runtime");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let target = target.to_owned();
        runtime.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else { return };
                    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::spawn(delayed(in_read, out_write, one_way));
                    tokio::spawn(delayed(out_read, in_write, one_way));
                });
            }
        });
        DelayProxy { addr, _runtime: runtime }
    }
}

/// Copy `from` to `to`, each chunk written `delay` after it was read.
async fn delayed(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; READ_BYTES];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn bytes_come_back_whole_and_a_round_trip_late() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = server.local_addr().expect("address").to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = server.accept().expect("accept");
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
        });
        let proxy = DelayProxy::start(&target, Duration::from_millis(50));
        let mut client = std::net::TcpStream::connect(&proxy.addr).expect("connect");
        let started = std::time::Instant::now();
        client.write_all(b"ping").expect("write");
        let mut back = [0u8; 4];
        client.read_exact(&mut back).expect("read");
        assert_eq!(&back, b"ping");
        assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
    }
}
