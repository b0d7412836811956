#!/usr/bin/python3
"""The web UI in a real browser (headless Chromium through Selenium), as a person uses it.

It starts `tern standalone --http 127.0.0.1:0` in a temp dir, makes tokens, applies a
workflow with a few shell tasks (one echoing lines, one sleeping long) and starts it; then
in the browser: signs in with the token, sees the instance in the list, opens its DAG (the
finished tasks SUCCESS, the sleeping one RUNNING_EXECUTION), follows the echoing task's
log, sees the schedule's next fire times, the workers and the definition, gets a clear
refusal (403) when the token behind the page is a viewer's, presses Stop and sees STOP
(and `tern status --json` agrees); sees the state machines' diagrams (the server's SVG) and
their transitions; creates a backfill from the form and sees it run to DONE, stops and
resumes another with its buttons; a viewer token gets no Stop button and no backfill form.
Every process it started is ended and the temp dir removed. Waits poll with generous timeouts (no wall-clock threshold).

Usage: test_ui.py TERN_BIN. TERN_UI_SHOTS=DIR saves the screenshots there (docs/ui).
Exits 77 (skipped) when Chromium, its driver or Selenium is missing: tools/setup.sh test
installs them.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
WAIT = 120  # seconds: a bound for a hung run, not a speed requirement

WORKFLOW = """name: uidemo
schedule:
  cron: "0 3 * * *"
tasks:
  - name: prepare
    type: shell
    command: echo prepared
  - name: echoer
    type: shell
    deps: [prepare]
    command: for i in 1 2 3 4 5; do echo "ui-line-$i"; done
  - name: sleeper
    type: shell
    deps: [prepare]
    command: sleep 3600
  - name: publish
    type: shell
    deps: [echoer, sleeper]
    command: echo published
"""

QUICK = """name: uiquick
tasks:
  - name: hello
    type: shell
    command: echo hello
"""


def skip(why):
    print(f"SKIP: {why} (tools/setup.sh test installs chromium, chromium-driver and "
          "python3-selenium)")
    sys.exit(SKIP)


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    skip("python3-selenium is not installed")

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
if not CHROMIUM or not DRIVER:
    skip("chromium or chromedriver is not installed")


class Run:
    def __init__(self, tern):
        self.tern = tern
        self.tmp = tempfile.mkdtemp(prefix="tern-ui-")
        self.data = os.path.join(self.tmp, "data")
        self.daemon = None
        self.driver = None
        self.port = None
        self.shots = os.environ.get("TERN_UI_SHOTS") or os.path.join(self.tmp, "shots")
        os.makedirs(self.shots, exist_ok=True)

    def cli(self, *args, check=True):
        r = subprocess.run([self.tern, *args, "--data", self.data], capture_output=True,
                           text=True, cwd=self.tmp, timeout=WAIT)
        if check and r.returncode != 0:
            raise AssertionError(f"tern {' '.join(args)}: exit {r.returncode}: {r.stderr}")
        return r

    def start_daemon(self):
        self.errlog = open(os.path.join(self.tmp, "standalone.err"), "w+")
        self.daemon = subprocess.Popen(
            [self.tern, "standalone", "--data", self.data, "--no-cgroup", "--slots", "4",
             "--http", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=self.errlog,
            cwd=self.tmp, start_new_session=True)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self.errlog.seek(0)
            m = re.search(r"http API on http://127\.0\.0\.1:(\d+)/", self.errlog.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.daemon.poll() is not None:
                break
            time.sleep(0.1)
        self.errlog.seek(0)
        raise AssertionError("the standalone did not say where it listens:\n" +
                             self.errlog.read())

    def token(self, name, role):
        out = self.cli("token", "add", name, "--role", role).stdout
        m = re.search(r"tern_\S+", out)
        assert m, f"no token in {out!r}"
        return m.group(0)

    def browser(self):
        o = webdriver.ChromeOptions()
        o.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                  "--disable-gpu", "--window-size=1500,950",
                  f"--user-data-dir={os.path.join(self.tmp, 'chromium')}"):
            o.add_argument(a)
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=o)
        self.driver.set_page_load_timeout(WAIT)

    def close(self):
        if self.driver:
            try:
                self.driver.quit()
            except Exception as e:  # the browser may be gone already
                print(f"closing the browser: {e}")
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the page ----

    def until(self, what, fn):
        try:
            # the page redraws its tables as state changes: an element read in the middle of
            # a redraw is stale, and the next poll reads the new one
            return WebDriverWait(self.driver, WAIT, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: fn(d))
        except Exception:
            self.shot("failure")
            raise AssertionError(f"the page never showed {what}; page text:\n"
                                 + self.driver.find_element(By.TAG_NAME, "body").text)

    def css(self, sel):
        return self.driver.find_elements(By.CSS_SELECTOR, sel)

    def shot(self, name):
        path = os.path.join(self.shots, name + ".png")
        self.driver.save_screenshot(path)
        print(f"screenshot {path}")

    def sign_in(self, token):
        d = self.driver
        d.get(f"http://127.0.0.1:{self.port}/")
        self.until("the sign-in form", lambda _: self.css("#token"))
        self.css("#token")[0].send_keys(token)
        self.css("#signin")[0].click()
        self.until("the instances list", lambda _: self.css("#instances"))

    def node_state(self, task):
        n = self.css(f'g.node[data-task="{task}"]')
        return n[0].get_attribute("data-state") if n else None


def main():
    if len(sys.argv) != 2:
        print("usage: test_ui.py TERN_BIN", file=sys.stderr)
        return 2
    r = Run(os.path.abspath(sys.argv[1]))
    try:
        scenario(r)
    finally:
        r.close()
    print("1 passed, 0 failed")
    return 0


def scenario(r):
    r.start_daemon()
    op = r.token("ui-operator", "operator")
    viewer = r.token("ui-viewer", "viewer")
    wf = os.path.join(r.tmp, "uidemo.yaml")
    with open(wf, "w") as f:
        f.write(WORKFLOW)
    r.cli("def", "apply", wf)
    out = r.cli("start", "uidemo").stdout
    iid = re.search(r"instance (\d+)", out).group(1)
    r.browser()

    # the list: the instance appears with its state
    r.sign_in(op)
    row = f'#instances tr[data-id="{iid}"]'
    r.until(f"instance {iid} in the list", lambda _: r.css(row))
    r.until("the instance RUNNING_EXECUTION in the list",
            lambda _: "RUNNING_EXECUTION" in r.css(row)[0].text)
    r.shot("instances")

    # its DAG: the finished tasks SUCCESS, the sleeping one running, the last not created
    r.css(row)[0].click()
    r.until("the DAG with prepare SUCCESS", lambda _: r.node_state("prepare") == "SUCCESS")
    r.until("echoer SUCCESS", lambda _: r.node_state("echoer") == "SUCCESS")
    r.until("sleeper RUNNING_EXECUTION",
            lambda _: r.node_state("sleeper") == "RUNNING_EXECUTION")
    assert r.node_state("publish") == "not created", r.node_state("publish")
    fill = r.css('g.node[data-task="prepare"] rect')[0].get_attribute("fill")
    assert fill == "#2e9e4f", f"a SUCCESS task is drawn {fill}, not green"
    r.until("the Gantt bars", lambda _: len(r.css("#gantt .bar")) >= 3)
    r.until("the audit timeline", lambda _: len(r.css("#audit tbody tr")) >= 5)
    r.shot("dag")

    # the echoing task's log, followed
    r.css('g.node[data-task="echoer"]')[0].click()
    r.until("the log's lines", lambda _: "ui-line-5" in r.css("#log")[0].text)
    text = r.css("#log")[0].text
    assert all(f"ui-line-{i}" in text for i in range(1, 6)), text
    r.shot("log")

    # the schedule with its next fire times
    r.driver.get(f"http://127.0.0.1:{r.port}/#/schedules")
    r.until("the schedule row", lambda _: r.css('#schedules tr[data-wf="uidemo"]'))
    r.until("its next fire time", lambda _: "03:00:00" in
            r.css('#schedules tr[data-wf="uidemo"]')[0].text)
    r.shot("schedules")

    # the workers with their slots in use (the sleeper holds one)
    r.driver.get(f"http://127.0.0.1:{r.port}/#/workers")
    r.until("the local worker using a slot", lambda _: any(
        "local" in tr.text and "1/4" in tr.text for tr in r.css("#workers tbody tr")))
    r.shot("workers")

    # the definition with its graph and YAML
    r.driver.get(f"http://127.0.0.1:{r.port}/#/definitions")
    r.until("the definition row", lambda _: r.css('#defs tr[data-name="uidemo"]'))
    r.css('#defs tr[data-name="uidemo"]')[0].click()
    r.until("its YAML", lambda _: r.css("#yaml") and "sleep 3600" in r.css("#yaml")[0].text)
    r.shot("definitions")

    # Stop: the page turns STOP, and the CLI agrees
    r.driver.get(f"http://127.0.0.1:{r.port}/#/instance/{iid}")
    r.until("the Stop button", lambda _: r.css('button[data-label="Stop"]'))
    r.until("the instance state", lambda _: r.css("#wf-state[data-state]"))
    # a refusal reads clearly: the token behind the page lowered to a viewer's (as when
    # an admin replaces a token), Pause answers 403 and the page says why
    r.driver.execute_script("sessionStorage.setItem('tern-token', arguments[0])", viewer)
    r.css('button[data-label="Pause"]')[0].click()
    r.until("the refusal", lambda _: "Pause refused" in r.css("#flash")[0].text and
            "may not" in r.css("#flash")[0].text)
    st = json.loads(r.cli("status", iid, "--json").stdout)
    assert st["workflow"]["state"] == "RUNNING_EXECUTION", st
    r.driver.execute_script("sessionStorage.setItem('tern-token', arguments[0])", op)
    r.css('button[data-label="Stop"]')[0].click()
    r.until("the instance STOP", lambda _:
            r.css("#wf-state")[0].get_attribute("data-state") == "STOP")
    r.until("sleeper killed", lambda _: r.node_state("sleeper") not in
            ("RUNNING_EXECUTION", "DISPATCH"))
    st = json.loads(r.cli("status", iid, "--json").stdout)
    assert st["workflow"]["state"] == "STOP", st
    r.shot("stopped")

    machines(r)
    backfills(r)

    # a viewer sees the instance but no control button
    r.css("#logout")[0].click()
    r.sign_in(viewer)
    r.driver.get(f"http://127.0.0.1:{r.port}/#/instance/{iid}")
    r.until("the DAG for the viewer", lambda _: r.node_state("sleeper"))
    assert not r.css('button[data-label="Stop"]'), "a viewer was shown Stop"
    assert "(viewer)" in r.css("#who")[0].text
    r.driver.get(f"http://127.0.0.1:{r.port}/#/backfills")
    r.until("the backfills for the viewer", lambda _: len(r.css("#backfills tbody tr")) >= 2)
    assert not r.css("#bf-form"), "a viewer was shown the backfill form"
    assert not r.css('#backfills button'), "a viewer was shown Stop or Resume"


def svg_texts(r):
    return [t.get_attribute("textContent") for t in r.css("#sm-diagram text")]


def machines(r):
    """The state machines: the server's diagram with every state, and the transitions."""
    r.driver.get(f"http://127.0.0.1:{r.port}/#/machines/workflow")
    r.until("the workflow diagram", lambda _: "RUNNING_EXECUTION" in svg_texts(r))
    texts = svg_texts(r)
    for s in ("SUBMITTED_SUCCESS", "READY_STOP", "STOP", "SUCCESS", "FAILURE", "PAUSE"):
        assert s in texts, f"{s} is not drawn: {texts}"
    assert r.css("#sm-diagram")[0].get_attribute("data-machine") == "workflow"
    box = r.css("#sm-diagram")[0].size
    assert box["width"] > 100 and box["height"] > 50, f"the diagram is not shown: {box}"
    rows = [tr.text for tr in r.css("#sm-trans tbody tr")]
    assert any("RUNNING_EXECUTION" in t and "STOP" in t and "READY_STOP" in t for t in rows), rows
    r.shot("machines")
    r.css('#sm-tabs a[href="#/machines/backfill"]')[0].click()
    r.until("the backfill diagram", lambda _: r.css("#sm-diagram") and r.css(
        "#sm-diagram")[0].get_attribute("data-machine") == "backfill")
    assert "STOPPED" in svg_texts(r), svg_texts(r)
    r.until("its transitions", lambda _: len(r.css("#sm-trans tbody tr")) == 5)


def backfill_row(r, bid):
    rows = r.css(f'#backfills tr[data-id="{bid}"]')
    return rows[0].text if rows else ""


def backfills(r):
    """A backfill made with the form runs its dates to DONE; another is stopped and
    resumed with its row's buttons."""
    quick = os.path.join(r.tmp, "uiquick.yaml")
    with open(quick, "w") as f:
        f.write(QUICK)
    r.cli("def", "apply", quick)
    r.driver.get(f"http://127.0.0.1:{r.port}/#/backfills")
    r.until("the backfill form", lambda _: r.css("#bf-form"))
    r.css("#bf-wf")[0].send_keys("uiquick")
    r.css("#bf-from")[0].send_keys("2026-01-01")
    r.css("#bf-to")[0].send_keys("2026-01-03")
    r.css("#bf-parallel")[0].clear()
    r.css("#bf-parallel")[0].send_keys("2")
    r.css("#bf-create")[0].click()
    r.until("the backfill started", lambda _: "started: 3 dates" in r.css("#flash")[0].text)
    bid = re.search(r"backfill (\d+)", r.css("#flash")[0].text).group(1)
    r.until(f"backfill {bid} DONE with 3 of 3",
            lambda _: "DONE" in backfill_row(r, bid) and "3/3" in backfill_row(r, bid))
    r.until("its dates, each SUCCESS", lambda _: len(r.css("#bf-dates-table tbody tr")) == 3
            and all("SUCCESS" in tr.text for tr in r.css("#bf-dates-table tbody tr")))
    assert not r.css(f'#backfills tr[data-id="{bid}"] button'), "a DONE backfill has buttons"
    bf = json.loads(r.cli("backfill", "show", bid, "--json").stdout)
    assert bf["state"] == "DONE" and bf["total"] == 3, bf

    # a bad request reads clearly
    r.css("#bf-wf")[0].clear()
    r.css("#bf-wf")[0].send_keys("uiquick")
    r.css("#bf-from")[0].clear()
    r.css("#bf-to")[0].clear()
    r.css("#bf-dates")[0].send_keys("2026-13-01")
    r.css("#bf-create")[0].click()
    r.until("the refusal of a bad date", lambda _: "Create failed" in r.css("#flash")[0].text
            and "2026-13-01" in r.css("#flash")[0].text)

    # one that runs (the sleeping workflow): Stop, then Resume, then Stop again
    r.css("#bf-wf")[0].clear()
    r.css("#bf-wf")[0].send_keys("uidemo")
    r.css("#bf-dates")[0].clear()
    r.css("#bf-dates")[0].send_keys("2026-03-01, 2026-03-02")
    r.css("#bf-parallel")[0].clear()
    r.css("#bf-parallel")[0].send_keys("1")  # one at a time: resuming starts the second
    r.css("#bf-create")[0].click()
    r.until("the second backfill started", lambda _: "started: 2 dates" in r.css("#flash")[0].text)
    slow = re.search(r"backfill (\d+)", r.css("#flash")[0].text).group(1)
    stop = f'#backfills tr[data-id="{slow}"] button[data-label="Stop"]'
    resume = f'#backfills tr[data-id="{slow}"] button[data-label="Resume"]'
    r.until("its Stop button", lambda _: r.css(stop))
    r.css(stop)[0].click()
    r.until("it STOPPED with a Resume button", lambda _: "STOPPED" in backfill_row(r, slow)
            and r.css(resume))
    r.shot("backfills")
    r.css(resume)[0].click()
    r.until("it RUNNING again", lambda _: "RUNNING" in backfill_row(r, slow) and r.css(stop))
    r.css(stop)[0].click()
    r.until("it STOPPED again", lambda _: "STOPPED" in backfill_row(r, slow))

    def settled():
        bf = json.loads(r.cli("backfill", "show", slow, "--json").stdout)
        states = [d["state"] for d in bf["dates"]]
        return bf["state"] == "STOPPED" and all(s in ("STOP", "waiting") for s in states)
    r.until("its instances stopped", lambda _: settled())


if __name__ == "__main__":
    sys.exit(main())
