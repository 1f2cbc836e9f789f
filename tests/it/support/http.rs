//! A minimal HTTP/1.1 client over a plain TCP socket for the gateway's own endpoints (health,
//! metrics, the management API): one request per connection, the whole answer read.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

/// `method path` with `body` (and a bearer `token`) on `address`: (status, body), or `None`
/// while nothing answers there.
pub fn request(address: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `GET path` on `address`.
pub fn get(address: &str, path: &str) -> Option<(u16, String)> {
    request(address, "GET", path, "", None)
}
