//! The dry run's output: per event (position, stream, type) what the sidecar answered, each
//! operation decoded and, on SQL targets, its outcome in the rolled-back transaction. A table
//! for people on stdout, or one JSON object per event (`--json`, JSON lines) with the header and
//! the summary on stderr.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{
    answers::{Answer, Silence},
    decode::Decoded,
    sample::Sampled,
    trial::Trial,
};
use projector_gateway::event::{Event, Position};

/// What became of one operation in the trial.
pub enum Check {
    /// The target takes no trial (or the operation is not SQL).
    None,
    /// Not run, and why.
    NotRun(String),
    /// Run: the rows it changed (where the database says), and its plan (`--explain`).
    Ok { rows: Option<u64>, plan: Vec<String> },
    /// The database refused it.
    Failed { error: String, plan: Vec<String> },
}

/// One operation of an answer.
pub struct OpReport {
    /// 1-based, in the order the gateway applies them.
    pub number: usize,
    /// The operation's message name, e.g. `projection.Statement`.
    pub name: String,
    /// Decoded for the target (`None`: `Ignore`), or why it cannot be.
    pub decoded: Result<Option<Decoded>, String>,
    pub check: Check,
}

/// One event of the sample and what came of it.
pub struct EventReport {
    pub event: Event,
    pub partition: u32,
    pub answer: Answer,
    pub ops: Vec<OpReport>,
}

impl EventReport {
    /// Whether anything about this event would stop or poison it in `run`.
    fn failed(&self) -> bool {
        matches!(self.answer, Answer::Error { .. } | Answer::Failed(_))
            || self.ops.iter().any(|op| op.decoded.is_err() || matches!(op.check, Check::Failed { .. }))
    }
}

/// The header's facts.
pub struct Header<'a> {
    pub connector: &'a str,
    pub sidecar: &'a str,
    pub described: String,
    pub sampled: &'a Sampled,
    pub from: Position,
    pub target: String,
    pub trial: &'a Trial,
}

impl Header<'_> {
    fn lines(&self) -> Vec<String> {
        let s = self.sampled;
        let mut read = format!(
            "connector `{}`: {} event(s) after position {}, read up to position {}",
            self.connector,
            s.events.len(),
            self.from,
            s.read_up_to
        );
        if s.filtered_out > 0 {
            let _ = write!(read, " ({} left out by the filters)", s.filtered_out);
        }
        if let Some(head) = s.head {
            let _ = write!(read, "; the log's head is at {head}");
        }
        let mut lines = vec![read, format!("sidecar {}: {}", self.sidecar, self.described), format!("target {}: {}", self.target, self.trial.summary)];
        lines.extend(self.trial.problems.iter().map(|p| format!("PROBLEM: {p}")));
        lines
    }
}

/// The counts of the last line, and the exit code's reason.
pub struct Summary {
    events: usize,
    operations: usize,
    ok: usize,
    failed: usize,
    not_run: usize,
    ignore: usize,
    undecodable: usize,
    sidecar_failures: usize,
    unanswered: usize,
    failed_events: usize,
    problems: usize,
}

impl Summary {
    pub fn of(events: &[EventReport], trial: &Trial) -> Self {
        let ops = || events.iter().flat_map(|e| &e.ops);
        Self {
            events: events.len(),
            operations: ops().count(),
            ok: ops().filter(|op| matches!(op.check, Check::Ok { .. })).count(),
            failed: ops().filter(|op| matches!(op.check, Check::Failed { .. })).count(),
            not_run: ops().filter(|op| matches!(op.check, Check::NotRun(_))).count(),
            ignore: ops().filter(|op| matches!(op.decoded, Ok(None))).count(),
            undecodable: ops().filter(|op| op.decoded.is_err()).count(),
            sidecar_failures: events.iter().filter(|e| matches!(e.answer, Answer::Error { .. } | Answer::Failed(_))).count(),
            unanswered: events.iter().filter(|e| matches!(e.answer, Answer::Silent(_))).count(),
            failed_events: events.iter().filter(|e| e.failed()).count(),
            problems: trial.problems.len(),
        }
    }

    /// Events that failed, and problems of the trial: the dry run fails when there is any.
    pub fn failures(&self) -> usize {
        self.failed_events + self.problems
    }

    fn line(&self) -> String {
        let mut line = format!("{} event(s), {} operation(s)", self.events, self.operations);
        let counts = [
            (self.ok, "ok"),
            (self.failed, "FAILED"),
            (self.not_run, "not run"),
            (self.ignore, "Ignore"),
            (self.undecodable, "undecodable"),
            (self.sidecar_failures, "sidecar failure(s)"),
            (self.unanswered, "unanswered (ignored)"),
        ];
        let said: Vec<String> = counts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        if !said.is_empty() {
            let _ = write!(line, ": {}", said.join(", "));
        }
        let verdict = match (self.failed_events, self.problems) {
            (0, 0) => "all ok".to_string(),
            (events, 0) => format!("{events} event(s) FAILED"),
            (0, problems) => format!("{problems} problem(s) of the trial"),
            (events, problems) => format!("{events} event(s) FAILED, {problems} problem(s) of the trial"),
        };
        format!("{line}. {verdict}; nothing was committed to the target, no checkpoint moved")
    }
}

/// The table on stdout.
pub fn print_table(header: &Header, events: &[EventReport], summary: &Summary) {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&line);
        out.push('\n');
    }
    for event in events {
        out.push('\n');
        table_event(&mut out, event);
    }
    out.push('\n');
    out.push_str(&summary.line());
    out.push('\n');
    print!("{out}");
}

fn table_event(out: &mut String, report: &EventReport) {
    let e = &report.event;
    let _ = writeln!(
        out,
        "position {}  stream {}  type {}  (event {}, partition {}){}",
        e.position,
        e.stream,
        e.event_type,
        e.event_id,
        report.partition,
        if report.failed() { "  FAILED" } else { "" }
    );
    match &report.answer {
        Answer::Operations(_) if report.ops.is_empty() => out.push_str("  no operations (nothing to apply)\n"),
        Answer::Operations(_) => {
            for op in &report.ops {
                table_op(out, op);
            }
        }
        answer => {
            let _ = writeln!(out, "  {}", answer_text(answer).unwrap_or_default());
        }
    }
}

fn table_op(out: &mut String, op: &OpReport) {
    let first = format!("  {}. ", op.number);
    let indent = " ".repeat(first.len());
    let lines = match &op.decoded {
        Ok(Some(decoded)) => decoded.lines(),
        Ok(None) => vec!["Ignore (nothing to apply)".to_string()],
        Err(e) => vec![format!("{}: CANNOT BE DECODED: {e}", op.name)],
    };
    for (i, line) in lines.iter().flat_map(|l| l.lines()).enumerate() {
        let _ = writeln!(out, "{}{line}", if i == 0 { &first } else { &indent });
    }
    let plan = match &op.check {
        Check::None => return,
        Check::NotRun(why) => {
            let _ = writeln!(out, "{indent}-> not run: {why}");
            return;
        }
        Check::Ok { rows, plan } => {
            let _ = match rows {
                Some(rows) => writeln!(out, "{indent}-> ok, {rows} row(s) changed"),
                None => writeln!(out, "{indent}-> ok"),
            };
            plan
        }
        Check::Failed { error, plan } => {
            let _ = writeln!(out, "{indent}-> FAILED: {error}");
            plan
        }
    };
    if !plan.is_empty() {
        let _ = writeln!(out, "{indent}   plan:");
        for line in plan {
            let _ = writeln!(out, "{indent}     {line}");
        }
    }
}

/// What an answer other than operations says, one line.
fn answer_text(answer: &Answer) -> Option<String> {
    Some(match answer {
        Answer::Operations(_) => return None,
        Answer::Error { message, retryable } => {
            format!("SIDECAR ERROR{}: {message}", if *retryable { " (retryable: `run` sends the event again up to `max_retries` times)" } else { "" })
        }
        Answer::Failed(reason) => format!("FAILED: {reason}"),
        Answer::Silent(Silence::Settled) => {
            "no answer: the sidecar answered a later event, so it ignores this one (`sidecar.answers: handled`)".to_string()
        }
        Answer::Silent(Silence::TimedOut(after)) => format!(
            "no answer within {after:?}: counted as ignored (`sidecar.answers: handled`; `run` tells such silences by the sidecar's \
             later answers, the dry run by this timeout, --answer-timeout-ms)"
        ),
    })
}

/// JSON lines on stdout; the header and the summary on stderr.
pub fn print_json(header: &Header, events: &[EventReport], summary: &Summary) {
    for line in header.lines() {
        eprintln!("{line}");
    }
    let mut out = String::new();
    for event in events {
        out.push_str(&event_json(event).to_string());
        out.push('\n');
    }
    print!("{out}");
    eprintln!("{}", summary.line());
}

fn event_json(report: &EventReport) -> Value {
    let e = &report.event;
    let mut object = json!({
        "position": e.position,
        "stream": e.stream,
        "type": e.event_type,
        "event_id": e.event_id,
        "partition": report.partition,
        "ok": !report.failed(),
    });
    let (answer, detail) = match &report.answer {
        Answer::Operations(_) => ("operations", None),
        Answer::Error { .. } => ("sidecar_error", answer_text(&report.answer)),
        Answer::Failed(_) => ("failed", answer_text(&report.answer)),
        Answer::Silent(_) => ("no_answer", answer_text(&report.answer)),
    };
    object["answer"] = json!(answer);
    if let Some(detail) = detail {
        object["error"] = json!(detail);
    }
    if let Answer::Error { message, retryable } = &report.answer {
        object["error"] = json!(message);
        object["retryable"] = json!(retryable);
    }
    object["operations"] = Value::Array(report.ops.iter().map(op_json).collect());
    object
}

fn op_json(op: &OpReport) -> Value {
    let mut object = json!({ "number": op.number, "name": op.name });
    match &op.decoded {
        Ok(Some(decoded)) => object["operation"] = decoded.json(),
        Ok(None) => object["operation"] = json!({ "kind": "Ignore" }),
        Err(e) => object["decode_error"] = json!(e),
    }
    let (mut result, plan) = match &op.check {
        Check::None => return object,
        Check::NotRun(why) => (json!({ "status": "not_run", "reason": why }), None),
        Check::Ok { rows, plan } => (json!({ "status": "ok", "rows": rows }), Some(plan)),
        Check::Failed { error, plan } => (json!({ "status": "failed", "error": error }), Some(plan)),
    };
    if let Some(plan) = plan.filter(|p| !p.is_empty()) {
        result["plan"] = json!(plan);
    }
    object["result"] = result;
    object
}
