//! The bytes of TDS 7.4 ([MS-TDS]) that the double reads and writes: packets (§2.2.3), the
//! PRELOGIN answer (§2.2.6.5), LOGIN7 fields (§2.2.6.4), ALL_HEADERS (§2.2.5.3), SQL batch and
//! RPC requests with their parameters' TYPE_INFO and values (§2.2.6.6, §2.2.5.4-5), and the
//! tokens of an answer: LOGINACK, ENVCHANGE, ERROR, COLMETADATA, ROW, RETURNSTATUS, DONE*.
//! Only what tiberius sends for the gateway is decoded; anything else panics with its type.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const PRELOGIN: u8 = 0x12;
pub const LOGIN7: u8 = 0x10;
pub const SQL_BATCH: u8 = 0x01;
pub const RPC: u8 = 0x03;
pub const ATTENTION: u8 = 0x06;
const TABULAR_RESULT: u8 = 0x04;
const PACKET_SIZE: usize = 4096;

/// Reads one message (packets up to the one marked end-of-message): (type, payload).
pub async fn read_message<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        r.read_exact(&mut header).await?;
        let length = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut body = vec![0u8; length.saturating_sub(8)];
        r.read_exact(&mut body).await?;
        payload.extend_from_slice(&body);
        if header[1] & 0x01 != 0 {
            return Ok((header[0], payload));
        }
    }
}

/// Writes `payload` as a tabular-result message, split into packets.
pub async fn write_message<W: AsyncWriteExt + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let chunks: Vec<&[u8]> = if payload.is_empty() { vec![&[]] } else { payload.chunks(PACKET_SIZE - 8).collect() };
    let mut out = Vec::with_capacity(payload.len() + 8 * chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        out.push(TABULAR_RESULT);
        out.push(if last { 0x01 } else { 0x00 });
        out.extend_from_slice(&((chunk.len() + 8) as u16).to_be_bytes());
        out.extend_from_slice(&[0x00, 0x34, (i + 1) as u8, 0x00]);
        out.extend_from_slice(chunk);
    }
    w.write_all(&out).await?;
    w.flush().await
}

/// The PRELOGIN answer: version, encryption NOT_SUP (no TLS at all), no instance, no MARS.
pub fn prelogin_response() -> Vec<u8> {
    // (token, data) in order; offsets are computed after the option table.
    let options: [(u8, Vec<u8>); 5] = [
        (0x00, vec![16, 0, 0x0f, 0xa0, 0, 0]), // VERSION: 16.0.4000, sub-build 0
        (0x01, vec![0x02]),                    // ENCRYPTION: ENCRYPT_NOT_SUP
        (0x02, vec![0x00]),                    // INSTOPT: default instance
        (0x03, vec![]),                        // THREADID: empty from a server
        (0x04, vec![0x00]),                    // MARS: off
    ];
    let table_len = options.len() * 5 + 1;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (token, value) in &options {
        table.push(*token);
        table.extend_from_slice(&((table_len + data.len()) as u16).to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    table.push(0xff);
    table.extend(data);
    table
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).expect("UTF-16")
}

fn put_utf16(out: &mut Vec<u8>, s: &str) {
    for unit in s.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

fn b_varchar(out: &mut Vec<u8>, s: &str) {
    out.push(s.encode_utf16().count() as u8);
    put_utf16(out, s);
}

fn us_varchar(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.encode_utf16().count() as u16).to_le_bytes());
    put_utf16(out, s);
}

/// (user name, database) of a LOGIN7 payload.
pub fn login_fields(payload: &[u8]) -> (String, String) {
    let field = |at: usize| {
        let offset = u16::from_le_bytes([payload[at], payload[at + 1]]) as usize;
        let chars = u16::from_le_bytes([payload[at + 2], payload[at + 3]]) as usize;
        utf16(&payload[offset..offset + 2 * chars])
    };
    (field(40), field(68))
}

/// LOGINACK, ENVCHANGE database, packet size and collation, DONE.
pub fn login_response(database: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ack = vec![0x01]; // interface: SQL
    ack.extend_from_slice(&0x7400_0004u32.to_be_bytes()); // TDS 7.4
    b_varchar(&mut ack, "TDS test double");
    ack.extend_from_slice(&[16, 0, 0x0f, 0xa0]);
    token(&mut out, 0xad, &ack);
    let mut db = vec![0x01];
    b_varchar(&mut db, database);
    b_varchar(&mut db, "master");
    token(&mut out, 0xe3, &db);
    let mut size = vec![0x04];
    b_varchar(&mut size, &PACKET_SIZE.to_string());
    b_varchar(&mut size, &PACKET_SIZE.to_string());
    token(&mut out, 0xe3, &size);
    let mut collation = vec![0x07, 5];
    collation.extend_from_slice(&COLLATION);
    collation.push(0);
    token(&mut out, 0xe3, &collation);
    done(&mut out, 0xfd, 0x0000, 0);
    out
}

/// SQL_Latin1_General_CP1_CI_AS.
const COLLATION: [u8; 5] = [0x09, 0x04, 0xd0, 0x00, 0x34];

/// A token with a u16 length before its body.
fn token(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

/// ENVCHANGE begin (8), commit (9) or rollback (10) of transaction `descriptor`.
pub fn transaction_change(out: &mut Vec<u8>, kind: u8, descriptor: u64) {
    let mut body = vec![kind];
    if kind == 8 {
        body.push(8);
        body.extend_from_slice(&descriptor.to_le_bytes());
        body.push(0);
    } else {
        body.push(0);
        body.push(8);
        body.extend_from_slice(&descriptor.to_le_bytes());
    }
    token(out, 0xe3, &body);
}

/// DONE (0xFD), DONEPROC (0xFE) or DONEINPROC (0xFF).
pub fn done(out: &mut Vec<u8>, kind: u8, status: u16, rows: u64) {
    out.push(kind);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
}

pub fn return_status(out: &mut Vec<u8>, status: i32) {
    out.push(0x79);
    out.extend_from_slice(&status.to_le_bytes());
}

/// An ERROR token as SQL Server sends it.
pub fn error(out: &mut Vec<u8>, number: u32, state: u8, class: u8, message: &str, line: u32) {
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(state);
    body.push(class);
    us_varchar(&mut body, message);
    b_varchar(&mut body, "tds-double");
    b_varchar(&mut body, "");
    body.extend_from_slice(&line.to_le_bytes());
    token(out, 0xaa, &body);
}

/// A column of a result set the double answers with.
pub enum Column {
    Int(&'static str),
    BigInt(&'static str),
    NVarChar(&'static str),
}

/// A cell of a row.
pub enum Cell {
    Int(i32),
    BigInt(i64),
    Text(String),
    /// NULL in an `Int` or `BigInt` column.
    Null,
}

/// COLMETADATA, the rows, DONEINPROC with the row count.
pub fn result_set(out: &mut Vec<u8>, columns: &[Column], rows: &[Vec<Cell>]) {
    out.push(0x81);
    out.extend_from_slice(&(columns.len() as u16).to_le_bytes());
    for column in columns {
        out.extend_from_slice(&0u32.to_le_bytes()); // user type
        out.extend_from_slice(&0x0001u16.to_le_bytes()); // nullable
        let name = match column {
            Column::Int(name) => {
                out.extend_from_slice(&[0x26, 4]);
                name
            }
            Column::BigInt(name) => {
                out.extend_from_slice(&[0x26, 8]);
                name
            }
            Column::NVarChar(name) => {
                out.push(0xe7);
                out.extend_from_slice(&400u16.to_le_bytes());
                out.extend_from_slice(&COLLATION);
                name
            }
        };
        b_varchar(out, name);
    }
    for row in rows {
        out.push(0xd1);
        for cell in row {
            match cell {
                Cell::Int(v) => {
                    out.push(4);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Cell::BigInt(v) => {
                    out.push(8);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Cell::Null => out.push(0),
                Cell::Text(s) => {
                    let mut bytes = Vec::new();
                    put_utf16(&mut bytes, s);
                    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                    out.extend(bytes);
                }
            }
        }
    }
    done(out, 0xff, 0x0011, rows.len() as u64);
}

/// A parameter value as the double decoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Bit(bool),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Canonical text form.
    Guid(String),
    /// Exact digits with the scale's point, e.g. `12.50`.
    Decimal(String),
    /// `YYYY-MM-DDTHH:MM:SS.fffffff` (datetime2 has no zone).
    DateTime2(String),
}

/// One RPC parameter: its name, the TDS type it came as (`intn(8)`, `nvarchar(4000)`, ...),
/// and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub tds_type: String,
    pub value: Value,
}

/// A cursor over a request payload.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        slice
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_le_bytes([b[0], b[1]])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }

    /// ALL_HEADERS: the transaction descriptor (0 outside a transaction).
    pub fn all_headers(&mut self) -> u64 {
        let total = self.u32() as usize;
        let end = self.at - 4 + total;
        let mut descriptor = 0;
        while self.at < end {
            let length = self.u32() as usize;
            let kind = self.u16();
            if kind == 2 {
                descriptor = self.u64();
                self.u32(); // outstanding request count
            } else {
                self.take(length - 6);
            }
        }
        descriptor
    }

    /// The rest as UTF-16 text (a SQL batch).
    pub fn rest_utf16(&mut self) -> String {
        let rest = self.take(self.bytes.len() - self.at);
        utf16(rest)
    }

    /// The procedure of an RPC: a name, or `sp_executesql` for its well-known id 10.
    pub fn proc_name(&mut self) -> String {
        let length = self.u16();
        let name = if length == 0xffff {
            match self.u16() {
                10 => "sp_executesql".to_string(),
                id => format!("proc id {id}"),
            }
        } else {
            utf16(self.take(2 * length as usize))
        };
        self.u16(); // option flags
        name
    }

    pub fn param(&mut self) -> Param {
        let name_len = self.u8() as usize;
        let name = utf16(self.take(2 * name_len));
        self.u8(); // status flags
        let (tds_type, value) = self.typed_value();
        Param { name, tds_type, value }
    }

    fn typed_value(&mut self) -> (String, Value) {
        let kind = self.u8();
        match kind {
            0x1f => ("null".into(), Value::Null),
            0x26 | 0x68 | 0x6d | 0x24 => {
                let max = self.u8();
                let len = self.u8() as usize;
                let name = match kind {
                    0x26 => format!("intn({max})"),
                    0x68 => "bitn".into(),
                    0x6d => format!("fltn({max})"),
                    _ => "guid".into(),
                };
                if len == 0 {
                    return (name, Value::Null);
                }
                let b = self.take(len);
                let value = match kind {
                    0x26 => Value::Int(match len {
                        1 => b[0] as i64,
                        2 => i16::from_le_bytes([b[0], b[1]]) as i64,
                        4 => i32::from_le_bytes(b.try_into().unwrap()) as i64,
                        _ => i64::from_le_bytes(b.try_into().unwrap()),
                    }),
                    0x68 => Value::Bit(b[0] != 0),
                    0x6d if len == 4 => Value::Float(f32::from_le_bytes(b.try_into().unwrap()) as f64),
                    0x6d => Value::Float(f64::from_le_bytes(b.try_into().unwrap())),
                    _ => {
                        let mut g = [0u8; 16];
                        g.copy_from_slice(b);
                        g[0..4].reverse();
                        g[4..6].reverse();
                        g[6..8].reverse();
                        Value::Guid(uuid::Uuid::from_bytes(g).hyphenated().to_string())
                    }
                };
                (name, value)
            }
            0xe7 | 0xef | 0xa5 | 0xad => {
                let max = self.u16();
                let text = kind == 0xe7 || kind == 0xef;
                if text {
                    self.take(5); // collation
                }
                let name = match (text, max) {
                    (true, 0xffff) => "nvarchar(max)".to_string(),
                    (true, n) => format!("nvarchar({})", n / 2),
                    (false, 0xffff) => "varbinary(max)".to_string(),
                    (false, n) => format!("varbinary({n})"),
                };
                let bytes = if max == 0xffff { self.plp() } else {
                    match self.u16() {
                        0xffff => None,
                        n => Some(self.take(n as usize).to_vec()),
                    }
                };
                let value = match bytes {
                    None => Value::Null,
                    Some(b) if text => Value::Text(utf16(&b)),
                    Some(b) => Value::Bytes(b),
                };
                (name, value)
            }
            0x6c | 0x6a => {
                self.u8(); // max length
                let (precision, scale) = (self.u8(), self.u8());
                let name = format!("numeric({precision},{scale})");
                let len = self.u8() as usize;
                if len == 0 {
                    return (name, Value::Null);
                }
                let positive = self.u8() == 1;
                let mut magnitude = [0u8; 16];
                magnitude[..len - 1].copy_from_slice(self.take(len - 1));
                let digits = format!("{:0>width$}", u128::from_le_bytes(magnitude), width = scale as usize + 1);
                let (int, frac) = digits.split_at(digits.len() - scale as usize);
                let sign = if positive { "" } else { "-" };
                let text = if scale == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
                (name, Value::Decimal(text))
            }
            0x2a => {
                let scale = self.u8();
                let name = format!("datetime2({scale})");
                let len = self.u8() as usize;
                if len == 0 {
                    return (name, Value::Null);
                }
                let mut time = [0u8; 8];
                time[..len - 3].copy_from_slice(self.take(len - 3));
                let increments = u64::from_le_bytes(time);
                let d = self.take(3);
                let days = u32::from_le_bytes([d[0], d[1], d[2], 0]);
                let date = chrono::NaiveDate::from_num_days_from_ce_opt(days as i32 + 1).unwrap();
                let nanos = increments * 10u64.pow(9 - scale as u32);
                let seconds = nanos / 1_000_000_000;
                let text = format!(
                    "{date}T{:02}:{:02}:{:02}.{:07}",
                    seconds / 3600,
                    seconds / 60 % 60,
                    seconds % 60,
                    nanos % 1_000_000_000 / 100
                );
                (name, Value::DateTime2(text))
            }
            other => panic!("the TDS double does not decode parameter type 0x{other:02x}"),
        }
    }

    /// A PLP value (MAX types): total length, chunks, terminator; `None` for NULL.
    fn plp(&mut self) -> Option<Vec<u8>> {
        if self.u64() == u64::MAX {
            return None;
        }
        let mut value = Vec::new();
        loop {
            let chunk = self.u32() as usize;
            if chunk == 0 {
                return Some(value);
            }
            value.extend_from_slice(self.take(chunk));
        }
    }
}
