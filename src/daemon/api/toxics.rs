//! toxiproxy's toxics as switchboard's faults and back: the JSON shapes, names and units of
//! toxiproxy's API (latency and jitter in ms, bandwidth in KB/s, slicer delay in µs, timeouts
//! in ms; `stream` is `upstream` or `downstream`). Pure, so every mapping is unit-tested.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::faults::{Direction, Fault, Kind};

/// An API error: its status and toxiproxy's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_body(why: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, format!("bad request body: {why}"))
    }

    /// toxiproxy's error body: `{"error": "...", "status": 404}`.
    pub(crate) fn body(&self) -> String {
        json!({"error": self.message, "status": self.status}).to_string()
    }
}

/// The toxic types served (toxiproxy's, and switchboard's `corrupt`).
pub(crate) const TYPES: &[&str] = &[
    "latency",
    "bandwidth",
    "slicer",
    "slow_close",
    "timeout",
    "reset_peer",
    "limit_data",
    "corrupt",
];

fn stream_of(d: Direction) -> &'static str {
    match d {
        Direction::ToClient => "downstream",
        Direction::ToServer => "upstream",
    }
}

fn ms(d: Duration) -> Value {
    json!(d.as_millis() as u64)
}

/// A fault as toxiproxy shows a toxic.
pub(crate) fn toxic_json(f: &Fault) -> Value {
    let attributes = match &f.kind {
        Kind::Latency { latency, jitter } => {
            json!({"latency": ms(*latency), "jitter": ms(*jitter)})
        }
        Kind::Bandwidth { rate } => json!({"rate": rate / 1000}),
        Kind::Slicer {
            average_size,
            size_variation,
            delay,
        } => json!({"average_size": average_size, "size_variation": size_variation,
            "delay": delay.as_micros() as u64}),
        Kind::SlowClose { delay } => json!({"delay": ms(*delay)}),
        Kind::Timeout { timeout } => json!({"timeout": ms(*timeout)}),
        Kind::ResetPeer { timeout, .. } => json!({"timeout": ms(*timeout)}),
        Kind::LimitData { bytes } => json!({"bytes": bytes}),
        Kind::Corrupt { probability }
        | Kind::Loss { probability }
        | Kind::Duplicate { probability } => json!({"probability": probability}),
        Kind::Reorder { probability, delay } => {
            json!({"probability": probability, "delay": ms(*delay)})
        }
    };
    json!({
        "attributes": attributes,
        "name": f.name,
        "type": f.kind.name(),
        "stream": stream_of(f.direction),
        "toxicity": f.toxicity,
    })
}

fn uint(attrs: &Map<String, Value>, key: &str) -> Result<u64, ApiError> {
    match attrs.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| {
                ApiError::bad_body(format!(
                    "attribute {key:?} must be a whole number of at least 0"
                ))
            }),
    }
}

fn prob(attrs: &Map<String, Value>, key: &str) -> Result<f64, ApiError> {
    match attrs.get(key).and_then(Value::as_f64) {
        Some(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(ApiError::bad_body(format!(
            "attribute {key:?} must be a number from 0 to 1"
        ))),
    }
}

/// The kind of toxic `ty` with `attrs` (missing attributes are 0, as in toxiproxy).
pub(crate) fn kind_of(ty: &str, attrs: &Map<String, Value>) -> Result<Kind, ApiError> {
    let msec = |k: &str| uint(attrs, k).map(Duration::from_millis);
    Ok(match ty {
        "latency" => Kind::Latency {
            latency: msec("latency")?,
            jitter: msec("jitter")?,
        },
        "bandwidth" => Kind::Bandwidth {
            rate: uint(attrs, "rate")?.saturating_mul(1000).max(1),
        },
        "slicer" => {
            let average_size = uint(attrs, "average_size")?.max(1) as usize;
            Kind::Slicer {
                average_size,
                size_variation: (uint(attrs, "size_variation")? as usize).min(average_size),
                delay: Duration::from_micros(uint(attrs, "delay")?),
            }
        }
        "slow_close" => Kind::SlowClose {
            delay: msec("delay")?,
        },
        "timeout" => Kind::Timeout {
            timeout: msec("timeout")?,
        },
        "reset_peer" => Kind::ResetPeer {
            timeout: msec("timeout")?,
            bytes: None,
        },
        "limit_data" => Kind::LimitData {
            bytes: uint(attrs, "bytes")?,
        },
        "corrupt" => Kind::Corrupt {
            probability: prob(attrs, "probability")?,
        },
        _ => return Err(ApiError::new(400, "invalid toxic type")),
    })
}

fn toxicity(v: Option<&Value>, default: f64) -> Result<f64, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Ok(t),
            _ => Err(ApiError::bad_body("toxicity must be a number from 0 to 1")),
        },
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::bad_body("expected a JSON object"))
}

fn attributes(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    match body.get("attributes") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_body("attributes must be an object")),
    }
}

/// A toxic to create, from `POST /proxies/{proxy}/toxics`.
pub(crate) fn new_toxic(body: &Value) -> Result<Fault, ApiError> {
    let b = object(body)?;
    let stream = match b.get("stream") {
        None | Some(Value::Null) => "downstream".to_string(),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(_) => return Err(ApiError::bad_body("stream must be a string")),
    };
    let direction = match stream.as_str() {
        "downstream" => Direction::ToClient,
        "upstream" => Direction::ToServer,
        _ => {
            return Err(ApiError::new(
                400,
                "stream was invalid, can be either upstream or downstream",
            ));
        }
    };
    let ty = b.get("type").and_then(Value::as_str).unwrap_or_default();
    if !TYPES.contains(&ty) {
        return Err(ApiError::new(400, "invalid toxic type"));
    }
    let kind = kind_of(ty, &attributes(b)?)?;
    let mut f = Fault::new(kind, direction);
    f.name = match b.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!("{ty}_{stream}"),
    };
    f.toxicity = toxicity(b.get("toxicity"), 1.0)?;
    Ok(f)
}

/// A toxic changed by `POST|PATCH /proxies/{proxy}/toxics/{toxic}`: the attributes given
/// replace those of the same name, the rest stay, and so does the toxicity unless given.
pub(crate) fn updated_toxic(old: &Fault, body: &Value) -> Result<Fault, ApiError> {
    let b = object(body)?;
    let current = toxic_json(old);
    let mut attrs = current["attributes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in attributes(b)? {
        attrs.insert(k, v);
    }
    let mut f = old.clone();
    f.kind = kind_of(old.kind.name(), &attrs)?;
    f.toxicity = toxicity(b.get("toxicity"), old.toxicity)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxics_map_to_faults_in_toxiproxys_units_and_back() {
        let f =
            new_toxic(&json!({"type": "latency", "attributes": {"latency": 250, "jitter": 10}}))
                .unwrap();
        assert_eq!(f.name, "latency_downstream");
        assert_eq!(f.direction, Direction::ToClient);
        assert_eq!(
            f.kind,
            Kind::Latency {
                latency: Duration::from_millis(250),
                jitter: Duration::from_millis(10)
            }
        );
        assert_eq!(
            toxic_json(&f),
            json!({"attributes": {"latency": 250, "jitter": 10}, "name": "latency_downstream",
                "type": "latency", "stream": "downstream", "toxicity": 1.0})
        );
        let b = new_toxic(
            &json!({"type": "bandwidth", "stream": "upstream", "name": "slow",
            "toxicity": 0.5, "attributes": {"rate": 100}}),
        )
        .unwrap();
        assert_eq!(b.kind, Kind::Bandwidth { rate: 100_000 });
        assert_eq!(toxic_json(&b)["attributes"]["rate"], 100);
        let s = new_toxic(&json!({"type": "slicer", "attributes": {"average_size": 64,
            "size_variation": 32, "delay": 1000}}))
        .unwrap();
        assert_eq!(toxic_json(&s)["attributes"]["delay"], 1000);
    }

    #[test]
    fn bad_toxics_get_toxiproxys_statuses() {
        let e = |v: Value| new_toxic(&v).unwrap_err();
        assert_eq!(
            e(json!({"type": "nope"})),
            ApiError::new(400, "invalid toxic type")
        );
        assert_eq!(
            e(json!({"type": "latency", "stream": "sideways"})).status,
            400
        );
        assert_eq!(e(json!({"type": "latency", "toxicity": 2})).status, 400);
        assert_eq!(e(json!([1])).status, 400);
        assert_eq!(
            e(json!({"type": "latency", "attributes": {"latency": "x"}})).status,
            400
        );
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let f = new_toxic(&json!({"type": "latency", "toxicity": 0.5,
            "attributes": {"latency": 100, "jitter": 5}}))
        .unwrap();
        let u = updated_toxic(&f, &json!({"attributes": {"latency": 300}})).unwrap();
        assert_eq!(
            u.kind,
            Kind::Latency {
                latency: Duration::from_millis(300),
                jitter: Duration::from_millis(5)
            }
        );
        assert_eq!(u.toxicity, 0.5);
        assert_eq!(u.name, f.name);
    }
}
