//! The dashboard: its login and session over plain HTTP (what is refused
//! without the key, the cookie's attributes, the content security policy),
//! and the pages in a real headless Chromium: log in, see the instances,
//! find one timeline bar per activity of a fan-out, raise an event from the
//! page and watch the instance complete. Screenshots of the key pages go to
//! `target/screenshots/`.

use std::time::Duration;

use bytes::Bytes;
use fantoccini::Locator;
use http::Method;
use perdure_tests::browser::{Browser, PAGE_DEADLINE};
use perdure_tests::{MASTER_KEY, TestHost, eventually, guests};

const DEADLINE: Duration = Duration::from_secs(30);

fn header<'a>(r: &'a perdure_tests::TestResponse, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn login(host: &TestHost, key: &str) -> anyhow::Result<perdure_tests::TestResponse> {
    let body = form_body(key);
    host.dashboard_request(
        Method::POST,
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Bytes::from(body),
    )
    .await
}

fn form_body(key: &str) -> String {
    format!(
        "key={}",
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
    )
}

#[tokio::test]
async fn the_dashboard_needs_a_session_and_keeps_the_key_out_of_pages() -> anyhow::Result<()> {
    let host = TestHost::start_with(
        &[
            ("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN),
            ("hostile.wasm", guests::HOSTILE),
        ],
        |_| {},
    )
    .await?;
    let id = host.start_instance("FanOutFanInOrchestrator", "{}").await?;
    host.wait_for_instance(&id, DEADLINE).await?;

    // Without a session: the login form, nothing else.
    let r = host.dashboard_get("/").await?;
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(page.contains("name=\"key\""), "{page}");
    assert!(!page.contains(&id) && !page.contains("app.js"), "{page}");
    let policy = header(&r, "content-security-policy");
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    for path in [
        "/admin/stats",
        "/admin/functions",
        "/metrics",
        &format!("/admin/instances/{id}/timeline"),
    ] {
        let r = host
            .dashboard_request(
                Method::GET,
                path,
                &[("x-perdure-dashboard", "1")],
                Bytes::new(),
            )
            .await?;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
    }

    let wrong = login(&host, "not-the-master-key").await?;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.text().contains("not the master key"),
        "{}",
        wrong.text()
    );
    assert!(wrong.headers.get("set-cookie").is_none());

    let r = login(&host, MASTER_KEY).await?;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(header(&r, "location"), "/");
    let cookie = header(&r, "set-cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains(MASTER_KEY),
        "the cookie holds a MAC, not the key"
    );
    let session = cookie.split(';').next().unwrap_or_default().to_owned();

    // The session opens the page, and the API only with the dashboard's header.
    let r = host
        .dashboard_request(Method::GET, "/", &[("cookie", &session)], Bytes::new())
        .await?;
    assert!(r.text().contains("/dashboard/app.js"), "{}", r.text());
    assert!(!r.text().contains(MASTER_KEY));
    let r = host
        .dashboard_request(
            Method::GET,
            "/admin/stats",
            &[("cookie", &session)],
            Bytes::new(),
        )
        .await?;
    assert_eq!(
        r.status,
        401,
        "a cookie alone (a cross-site request) opens no API: {}",
        r.text()
    );
    let with_header = [("cookie", session.as_str()), ("x-perdure-dashboard", "1")];
    let r = host
        .dashboard_request(Method::GET, "/admin/stats", &with_header, Bytes::new())
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        header(&r, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let r = host
        .dashboard_request(
            Method::GET,
            &format!("/runtime/webhooks/durabletask/instances/{id}"),
            &with_header,
            Bytes::new(),
        )
        .await?;
    assert_eq!(
        r.status,
        200,
        "instance routes take the session too: {}",
        r.text()
    );

    // A forged or altered session is refused.
    let forged = session.replace(|c: char| c.is_ascii_hexdigit() && c != '0', "0");
    let r = host
        .dashboard_request(
            Method::GET,
            "/admin/stats",
            &[("cookie", &forged), ("x-perdure-dashboard", "1")],
            Bytes::new(),
        )
        .await?;
    assert_eq!(r.status, 401, "{forged}");
    let far_future = format!("perdure_session=99999999999999.{}", "ab".repeat(32));
    let r = host
        .dashboard_request(
            Method::GET,
            "/admin/stats",
            &[("cookie", &far_future), ("x-perdure-dashboard", "1")],
            Bytes::new(),
        )
        .await?;
    assert_eq!(r.status, 401);

    // Assets are code only and public; logging out clears the cookie.
    for asset in ["app.js", "timeline.js", "app.css"] {
        let r = host.dashboard_get(&format!("/dashboard/{asset}")).await?;
        assert_eq!(r.status, 200, "{asset}");
        assert!(!r.text().contains(MASTER_KEY));
    }
    assert_eq!(
        host.dashboard_get("/dashboard/secrets.txt").await?.status,
        404
    );

    // The session is the dashboard listener's alone: the API's listener
    // (where functions serve pages) neither honours it nor serves the
    // dashboard, functions never see it, and the dashboard's listener
    // serves no function.
    let r = host
        .request(Method::GET, "/admin/stats", &with_header, Bytes::new())
        .await?;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = host.get("/").await?;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.error_message().contains("its own address"),
        "{}",
        r.text()
    );
    let cookies = format!("theme=dark; {session}; lang=en");
    let r = host
        .request(
            Method::GET,
            "/api/hostile/snoop",
            &[("cookie", &cookies)],
            Bytes::new(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("cookie: theme=dark; lang=en"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("perdure_session"), "{}", r.text());
    let r = host.dashboard_get("/api/hostile/snoop").await?;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = host
        .dashboard_request(
            Method::POST,
            "/logout",
            &[("cookie", &session)],
            Bytes::new(),
        )
        .await?;
    assert_eq!(r.status, 303);
    assert!(header(&r, "set-cookie").contains("Max-Age=0"));
    // The token itself is dead, not only the browser's copy.
    let r = host
        .dashboard_request(Method::GET, "/admin/stats", &with_header, Bytes::new())
        .await?;
    assert_eq!(r.status, 401, "a logged-out session: {}", r.text());
    Ok(())
}

#[tokio::test]
async fn failed_logins_are_throttled() -> anyhow::Result<()> {
    let host = TestHost::start().await?;
    for _ in 0..10 {
        assert_eq!(login(&host, "a wrong key, long enough").await?.status, 401);
    }
    // Past ten failures a minute, wrong keys get 429 with no cookie...
    let r = login(&host, "yet another wrong key").await?;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.headers.get("set-cookie").is_none());
    // ...and the operator is not locked out.
    let r = login(&host, MASTER_KEY).await?;
    assert_eq!(r.status, 303, "{}", r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser_shows_timelines_and_raises_events() -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let host = TestHost::start_with(
        &[
            ("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN),
            ("approval.wasm", guests::APPROVAL),
        ],
        |_| {},
    )
    .await?;
    let fan_out = host
        .start_instance("FanOutFanInOrchestrator", r#"{"count": 8}"#)
        .await?;
    host.wait_for_instance(&fan_out, DEADLINE).await?;
    let approval = host
        .start_instance(
            "DocumentApprovalOrchestrator",
            r#"{"document": "Q3 report"}"#,
        )
        .await?;
    host.wait_for_status(&approval, "the approval to wait for its event", |s| {
        s["customStatus"]["waitingFor"] == "ApprovalEvent"
    })
    .await?;
    let result = browse(&browser, &host, &fan_out, &approval).await;
    browser.close().await?;
    result
}

async fn browse(
    browser: &Browser,
    host: &TestHost,
    fan_out: &str,
    approval: &str,
) -> anyhow::Result<()> {
    let client = &browser.client;
    client.goto(&host.dashboard_url("/")).await?;
    browser.submit_key("wrong key, twelve+ chars").await?;
    browser.wait_for_count("p.error", 1).await?;
    browser.submit_key(MASTER_KEY).await?;

    // The instance list, with live counts per status.
    let rows = browser.wait_for_count("tr.instance-row", 2).await?;
    assert_eq!(rows, 2);
    browser
        .wait_for_text("#status-counts [data-status=Completed] .n", "1")
        .await?;
    browser
        .wait_for_text("#status-counts [data-status=Running] .n", "1")
        .await?;
    browser.screenshot("instances.png").await?;
    let cookies = client.get_all_cookies().await?;
    let session = cookies
        .iter()
        .find(|c| c.name() == "perdure_session")
        .ok_or_else(|| anyhow::anyhow!("no session cookie: {cookies:?}"))?;
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(
        session.same_site().map(|s| format!("{s:?}")).as_deref(),
        Some("Strict")
    );

    // Filter by status from the page.
    client
        .goto(&host.dashboard_url("/#/instances?status=Running"))
        .await?;
    browser
        .wait_for_count("#status-counts .count.selected", 1)
        .await?;
    eventually(
        PAGE_DEADLINE,
        "only the running instance listed",
        || async {
            let rows = client.find_all(Locator::Css("tr.instance-row")).await?;
            if rows.len() != 1 {
                return Ok(None);
            }
            Ok((rows[0].attr("data-id").await?.as_deref() == Some(approval)).then_some(()))
        },
    )
    .await?;

    // The fan-out's timeline: one bar per activity, all scheduled at once.
    client
        .goto(&host.dashboard_url(&format!("/#/instance/{fan_out}")))
        .await?;
    let bars = browser
        .wait_for_count("#timeline .bar[data-kind=activity]", 8)
        .await?;
    assert_eq!(bars, 8);
    let lefts: Vec<Option<String>> = {
        let mut lefts = Vec::new();
        for bar in client.find_all(Locator::Css("#timeline .bar")).await? {
            lefts.push(bar.css_value("left").await.ok());
        }
        lefts
    };
    assert!(
        lefts.windows(2).all(|w| w[0] == w[1]),
        "parallel bars start together: {lefts:?}"
    );
    browser
        .wait_for_text("#instance-status", "Completed")
        .await?;
    // The timeline below the instance's details, for the picture.
    client
        .execute(
            "document.getElementById('timeline').scrollIntoView()",
            vec![],
        )
        .await?;
    browser.screenshot("fan-out-timeline.png").await?;

    // Raise the approval's event from its page; it completes.
    client
        .goto(&host.dashboard_url(&format!("/#/instance/{approval}")))
        .await?;
    browser.wait_for_text("#instance-status", "Running").await?;
    browser
        .wait_for_count("#timeline .bar[data-kind=event]", 1)
        .await?;
    browser.screenshot("approval-waiting.png").await?;
    client
        .find(Locator::Css("#action-raise"))
        .await?
        .click()
        .await?;
    client
        .find(Locator::Css("#event-name"))
        .await?
        .send_keys("ApprovalEvent")
        .await?;
    let data = client.find(Locator::Css("#event-data")).await?;
    data.clear().await?;
    data.send_keys(r#"{"approved": true}"#).await?;
    client
        .find(Locator::Css("#dialog-ok"))
        .await?
        .click()
        .await?;
    browser
        .wait_for_text("#instance-status", "Completed")
        .await?;
    let done = host.instance(approval).await?.unwrap_or_default();
    assert_eq!(done["output"]["outcome"], "approved", "{done}");
    browser
        .wait_for_count("#log-rows tr:not(.empty)", 1)
        .await?;

    // Apps and functions with their invocation counts; entities.
    client.goto(&host.dashboard_url("/#/apps")).await?;
    browser.wait_for_count("tr.function-row", 2).await?;
    // The sixth cell is the invocation count.
    browser
        .wait_for_text(
            "tr.function-row[data-name=ProcessTask] td:nth-child(6)",
            "8",
        )
        .await?;
    browser.screenshot("apps.png").await?;

    // No page put the key in a URL or in its markup.
    for page in [
        "/#/instances",
        "/#/apps",
        "/#/entities",
        "/#/cluster",
        &format!("/#/instance/{fan_out}"),
    ] {
        client.goto(&host.dashboard_url(page)).await?;
        let shown = format!("body[data-route=\"{}\"]", page.trim_start_matches('/'));
        browser.wait_for_count(&shown, 1).await?;
        assert!(!client.current_url().await?.as_str().contains(MASTER_KEY));
        assert!(!client.source().await?.contains(MASTER_KEY), "{page}");
    }

    // Logging out ends the session.
    client
        .find(Locator::Css("form.logout button"))
        .await?
        .click()
        .await?;
    browser.wait_for_count("input[name=key]", 1).await?;
    Ok(())
}
