//! A real browser for the web console's tests: headless Chromium (Debian's `chromium`),
//! started fresh for each test with a profile of its own, driven through the DevTools
//! protocol over its WebSocket (tungstenite, blocking): pages in separate browser contexts
//! (each its own cookie jar, so each its own login), JavaScript evaluated in them, clicks as a
//! user makes them, and screenshots.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::util::WAIT;

/// Where the tests expect Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium and the DevTools connection to it. Killed when dropped.
pub(crate) struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    _profile: tempfile::TempDir,
}

/// A tab, in a browser context of its own.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    session: String,
}

impl Browser {
    /// Start Chromium and connect to it.
    pub(crate) fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the web console's tests need Debian's chromium package \
             (apt-get install chromium; .ci/run installs it)"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // It says where its DevTools listen on stderr.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = match rx.recv_timeout(WAIT * 3) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("chromium did not say where its DevTools listen");
            }
        };
        let (ws, _) = tungstenite::connect(url.as_str()).expect("connect to DevTools");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(WAIT * 3)).expect("read timeout");
        }
        Browser {
            child,
            ws,
            next: 1,
            _profile: profile,
        }
    }

    /// Call a DevTools method (on a page's session, or the browser's) and wait for its
    /// result; events in between are skipped.
    pub(crate) fn call(&mut self, page: Option<&Page>, method: &str, params: Value) -> Value {
        self.try_call(page, method, params)
            .unwrap_or_else(|e| panic!("DevTools {method} failed: {e}"))
    }

    /// [`call`](Browser::call), with the protocol's error as `Err` (a page navigating away).
    fn try_call(
        &mut self,
        page: Option<&Page>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = self.next;
        self.next += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(p) = page {
            msg["sessionId"] = p.session.clone().into();
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send to DevTools");
        loop {
            let m = self.ws.read().expect("read from DevTools");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("DevTools JSON");
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    return Err(e.clone());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// A new tab in a new browser context (no cookies shared with the others).
    pub(crate) fn page(&mut self) -> Page {
        let ctx = self.call(None, "Target.createBrowserContext", json!({}));
        let target = self.call(
            None,
            "Target.createTarget",
            json!({"url": "about:blank", "browserContextId": ctx["browserContextId"]}),
        );
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let page = Page {
            session: attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        };
        self.call(Some(&page), "Page.enable", json!({}));
        self.call(
            Some(&page),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        page
    }

    /// Go to `url` and wait until it is loaded.
    pub(crate) fn goto(&mut self, page: &Page, url: &str) {
        self.call(Some(page), "Page.navigate", json!({"url": url}));
        self.wait(
            page,
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
    }

    /// Evaluate `expr` in the page (awaiting a promise); its value.
    pub(crate) fn eval(&mut self, page: &Page, expr: &str) -> Value {
        let r = self.call(
            Some(page),
            "Runtime.evaluate",
            json!({"expression": expr, "awaitPromise": true, "returnByValue": true,
                "userGesture": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Wait until `cond` (a JavaScript expression) is true in the page, checking as the
    /// page changes; fails the test after a while.
    pub(crate) fn wait(&mut self, page: &Page, cond: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            // While the page navigates, it cannot answer: that is "not yet".
            let v = self
                .try_call(
                    Some(page),
                    "Runtime.evaluate",
                    json!({"expression": format!("(() => {{ try {{ return {cond}; }} catch (e) {{ return false; }} }})()"),
                        "returnByValue": true}),
                )
                .map_or(Value::Null, |v| v["result"]["value"].clone());
            if !(v.is_null() || v == false || v == "") {
                return v;
            }
            if Instant::now() >= deadline {
                let seen = self.eval(page, "location.href + '\\n' + document.body.innerText");
                panic!(
                    "the page never got to: {cond}\nit shows: {}",
                    seen.as_str().unwrap_or_default()
                );
            }
            // Give the page's own event loop a turn (a WebSocket message, a render).
            let _ = self.try_call(
                Some(page),
                "Runtime.evaluate",
                json!({"expression": "new Promise(r => setTimeout(r, 20))", "awaitPromise": true}),
            );
        }
    }

    /// Click the element `selector` names, as a user does.
    pub(crate) fn click(&mut self, page: &Page, selector: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        self.wait(
            page,
            &format!(
                "document.querySelector({sel}) !== null && !document.querySelector({sel}).disabled"
            ),
        );
        self.eval(page, &format!("document.querySelector({sel}).click()"));
    }

    /// Type `text` into the input `selector` names (replacing what it held).
    pub(crate) fn fill(&mut self, page: &Page, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        self.wait(
            page,
            &format!(
                "document.querySelector({sel}) !== null && !document.querySelector({sel}).disabled"
            ),
        );
        self.eval(page, &format!("document.querySelector({sel}).focus()"));
        self.eval(page, &format!("document.querySelector({sel}).value = ''"));
        self.call(Some(page), "Input.insertText", json!({"text": text}));
    }

    /// A PNG of what the page shows, written to `path`.
    pub(crate) fn screenshot(&mut self, page: &Page, path: &Path) {
        let r = self.call(
            Some(page),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": false}),
        );
        let png = base64(r["data"].as_str().expect("screenshot data"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64, decoded.
fn base64(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
