//! Dashboard benchmark: how long the instance page of a 10,000-task
//! fan-out takes to load in headless Chromium, from navigation to its
//! timeline drawn, and how long the drawing alone takes.
//!
//! The instance's history has the 10,000 `TaskScheduled` and 10,000
//! `TaskCompleted` events (plus its start and end); its timeline is one
//! bar per activity. Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`.
//!
//! Run with `cargo bench -p perdure-tests --bench dashboard`
//! (`PERDURE_BENCH_TASKS=N` changes the 10,000).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fantoccini::Locator;
use perdure_tests::browser::Browser;
use perdure_tests::{DURABLE, MASTER_KEY, TestHost, eventually, guests};

const ROUNDS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let tasks: usize = std::env::var("PERDURE_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let host =
        TestHost::start_with(&[("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN)], |_| {}).await?;
    let id = host
        .start_instance(
            "FanOutFanInOrchestrator",
            &format!(r#"{{"count": {tasks}}}"#),
        )
        .await?;
    host.wait_for_instance(&id, DEADLINE).await?;
    let history = host
        .get_admin(&format!("{DURABLE}/instances/{id}?showHistory=true"))
        .await?
        .json()?;
    let events = history["historyEvents"].as_array().map_or(0, Vec::len);
    let timeline = host
        .get_admin(&format!("/admin/instances/{id}/timeline"))
        .await?;
    println!(
        "instance {id}: {events} history events, timeline of {} bytes",
        timeline.text().len()
    );

    let Some(browser) = Browser::start().await? else {
        bail!("the dashboard benchmark needs chromium and chromedriver");
    };
    let client = &browser.client;
    client.goto(&host.dashboard_url("/")).await?;
    client
        .find(Locator::Css("input[name=key]"))
        .await?
        .send_keys(MASTER_KEY)
        .await?;
    client
        .find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    browser.wait_for_count("tr.instance-row", 1).await?;

    let bars = tasks.to_string();
    let mut loads = Vec::new();
    let mut draws = Vec::new();
    for _ in 0..ROUNDS {
        client.goto(&host.dashboard_url("/#/apps")).await?;
        browser.wait_for_count("tr.function-row", 1).await?;
        let started = Instant::now();
        client
            .goto(&host.dashboard_url(&format!("/#/instance/{id}")))
            .await?;
        let drawn = eventually(DEADLINE, "the timeline to be drawn", || async {
            let value = client
                .execute("return document.body.dataset.timelineBars === arguments[0] ? document.body.dataset.timelineMs : null", vec![bars.clone().into()])
                .await?;
            Ok(value.as_str().map(str::to_owned))
        })
        .await?;
        loads.push(started.elapsed());
        draws.push(drawn.parse::<f64>().context("timelineMs")?);
        // Reset for the next round.
        client
            .execute("delete document.body.dataset.timelineBars", vec![])
            .await?;
    }
    // Scrolling to the last bar: the virtualised rows follow.
    let started = Instant::now();
    client
        .execute(
            "const s = document.querySelector('.tl-scroll'); s.scrollTop = s.scrollHeight;",
            vec![],
        )
        .await?;
    let last = format!("#timeline .bar[data-index=\"{}\"]", tasks - 1);
    browser.wait_for_count(&last, 1).await?;
    let scrolled = started.elapsed();
    let rows = client
        .find_all(Locator::Css("#timeline .tl-row"))
        .await?
        .len();
    browser.close().await?;

    loads.sort();
    draws.sort_by(f64::total_cmp);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "page load (navigation to timeline drawn, {ROUNDS} rounds): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(loads[ROUNDS / 2]),
        ms(loads[0]),
        ms(loads[ROUNDS - 1])
    );
    println!(
        "timeline drawing alone: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        draws[ROUNDS / 2],
        draws[0],
        draws[ROUNDS - 1]
    );
    println!(
        "scroll to the last of {tasks} bars: {:.0} ms; rows in the DOM: {rows}",
        ms(scrolled)
    );
    Ok(())
}
