//! A web push service on loopback, as a browser vendor's would be to the host: it takes the
//! host's HTTP POSTs (an encrypted body, VAPID authorization), keeps what came, and answers with
//! the status a test sets (201 accepted, 410 gone). Opening the bodies is the test's job, with
//! the subscription's private key and auth secret (`tether_protocol::push::decrypt`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One push as it arrived.
#[derive(Debug, Clone)]
pub struct Push {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Push {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub struct PushService {
    pub url: String,
    received: Arc<Mutex<Vec<Push>>>,
    status: Arc<AtomicU16>,
}

impl PushService {
    /// Listen on a free loopback port; answer 201 until told otherwise. Its thread ends with the
    /// test process (it holds nothing else).
    pub fn start() -> PushService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(201));
        let (kept, answer) = (received.clone(), status.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream);
                let Some(push) = read_request(&mut reader) else { continue };
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(push);
                let status = answer.load(Ordering::SeqCst);
                let reply = format!("HTTP/1.1 {status} Answer\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = reader.get_mut().write_all(reply.as_bytes());
            }
        });
        PushService { url, received, status }
    }

    /// What the next pushes are answered with.
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Push> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn read_request(reader: &mut BufReader<std::net::TcpStream>) -> Option<Push> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers.iter().find(|(n, _)| n == "content-length")?.1.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Push { path, headers, body })
}
