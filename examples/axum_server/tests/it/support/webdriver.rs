//! Headless Chromium driven through chromedriver's WebDriver protocol (W3C): JSON over
//! HTTP, spoken with the tests' own client, so no browser or driver is downloaded and
//! no WebDriver crate is needed for the handful of commands the console's tests use.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Api, free_port};

/// A Chromium session, its chromedriver killed when dropped.
pub struct Browser {
    driver: Api,
    session: String,
    _chromedriver: tokio::process::Child,
    profile: std::path::PathBuf,
}

/// `name` from the environment (as `scripts/services.sh` exports it), else `fallback` on
/// the path; a failure that says how to install it when it does not run.
pub fn program(name: &str, fallback: &str) -> String {
    let program = std::env::var(name)
        .ok()
        .filter(|path| !path.trim().is_empty())
        .unwrap_or_else(|| fallback.to_owned());
    // chromedriver wants Chromium's path, not a name to look up.
    let program = if program.contains('/') {
        program
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(&program))
            .find(|path| path.is_file())
            .map_or(program, |path| path.display().to_string())
    };
    let runs = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        runs,
        "{program} does not run: `scripts/services.sh install` installs Debian's chromium and \
         chromium-driver (or set {name})"
    );
    program
}

/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Drop for Browser {
    /// A test that failed midway never deleted its session: its Chromium, found by its
    /// own profile folder, goes with chromedriver.
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-f", &format!("--user-data-dir={}", self.profile.display())])
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Chromium, headless, in a window of `width` x `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        let chromium = program("CHROMIUM", "chromium");
        let chromedriver = program("CHROMEDRIVER", "chromedriver");
        let port = free_port();
        let child = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {chromedriver}: {e}"));
        let driver = Api::at(format!("http://127.0.0.1:{port}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(
            driver.request(Method::GET, "/status", None, &[]).await,
            Ok((StatusCode::OK, _, ref body)) if body["value"]["ready"] == true
        ) {
            assert!(
                Instant::now() < deadline,
                "{chromedriver} not ready in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!(
            "firstcome-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let (status, _, body) = driver
            .request(Method::POST, "/session", Some(capabilities), &[])
            .await
            .expect("chromedriver answers");
        assert_eq!(status, StatusCode::OK, "new session: {body}");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {body}"))
            .to_owned();
        Self {
            driver,
            session,
            _chromedriver: child,
            profile,
        }
    }

    /// One command of the session; its `value`.
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, _, answer) = self
            .driver
            .request(method, &path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        answer["value"].clone()
    }

    /// Loads `url` in the tab.
    pub async fn goto(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body) in the page with `args`; what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.command(Method::POST, "/execute/sync", Some(body))
            .await
    }

    /// Waits up to `patience` for `script` to return something other than null or
    /// false; that value. `what` says what was waited for when it never comes.
    pub async fn wait_for(&self, what: &str, script: &str, patience: Duration) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            let value = self.run(script, json!([])).await;
            if !value.is_null() && value != false {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {patience:?}; the page said:\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text the page shows.
    pub async fn text(&self) -> String {
        let text = self.run("return document.body.innerText", json!([])).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// The element `css` selects (the first), as WebDriver names it.
    async fn element(&self, css: &str) -> Value {
        let body = json!({ "using": "css selector", "value": css });
        let found = self.command(Method::POST, "/element", Some(body)).await;
        found
            .get(ELEMENT)
            .cloned()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
    }

    /// Clicks `css`, as a user would (it must be shown).
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        let id = id.as_str().expect("an element id");
        self.command(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clears the field `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        let id = id.as_str().expect("an element id");
        self.command(
            Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Resizes the window to `width` x `height`.
    pub async fn resize(&self, width: u32, height: u32) {
        let rect = json!({ "width": width, "height": height });
        self.command(Method::POST, "/window/rect", Some(rect)).await;
    }

    /// Writes a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.command(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("a PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub async fn close(self) {
        let path = format!("/session/{}", self.session);
        let _ = self.driver.request(Method::DELETE, &path, None, &[]).await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
