#!/usr/bin/env python3
"""Browser half of tests-ui/status_page_test.sh (run by it; not meant to be run alone).

Opens the status page of a running node in headless Chromium (Debian's chromium and
chromedriver; Selenium never downloads anything), checks the members, runs an upload command
given by the shell script, and checks that the new file and its `accepted` event show up
without a reload. Prints one line per step; exits 0 when every check passed, 1 otherwise.
Always saves a screenshot (also on failure) and quits the browser.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch drivers or browsers

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

PREFIX = "status_page_test:"


class CheckFailed(Exception):
    pass


def say(msg):
    print(PREFIX, msg, flush=True)


def wait_for(what, deadline_s, probe, interval=0.25):
    """Calls probe() until it returns a truthy value (returned) or the deadline passes."""
    end = time.monotonic() + deadline_s
    last_err = None
    for _ in range(int(deadline_s / interval) + 2):
        try:
            value = probe()
            if value:
                return value
        except Exception as e:  # stale elements while the page re-renders; try again
            last_err = e
        if time.monotonic() >= end:
            break
        time.sleep(interval)
    raise CheckFailed("timed out after %ss waiting for %s%s" % (deadline_s, what, " (%s)" % last_err if last_err else ""))


def member_rows(driver):
    rows = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#members tr[data-member-name]"):
        tds = tr.find_elements(By.TAG_NAME, "td")
        rows[tr.get_attribute("data-member-name")] = {
            "state_attr": tr.get_attribute("data-state"),
            "name_text": tds[0].text if tds else "",
            "state_text": tds[1].text if len(tds) > 1 else "",
        }
    return rows


def file_row(driver, name):
    for tr in driver.find_elements(By.CSS_SELECTOR, "#files tr[data-file-name]"):
        if tr.get_attribute("data-file-name") == name:
            return tr
    return None


def accepted_event(driver, name):
    for li in driver.find_elements(By.CSS_SELECTOR, "#events li[data-kind]"):
        if li.get_attribute("data-kind") != "accepted":
            continue
        subject = li.find_elements(By.CSS_SELECTOR, ".name")
        if subject and subject[0].text == name:
            return li
    return None


def run_checks(driver, args):
    driver.get(args.url)
    say("opened %s" % args.url)

    node_name = args.names[0]
    wait_for("#node to show %r" % node_name, 60, lambda: node_name in driver.find_element(By.ID, "node").text)

    if args.certificate_until:
        # The node's own certificate: its end, with the days left, highlighted within 14 days.
        def certificate_fact():
            for div in driver.find_elements(By.CSS_SELECTOR, "#node dl > div"):
                if div.find_element(By.TAG_NAME, "dt").text.strip() == "certificate":
                    return div.find_element(By.TAG_NAME, "dd")
            return None

        dd = wait_for("a certificate fact in #node", 30, certificate_fact)
        text = dd.text.strip()
        if not re.fullmatch(r"until %s \((9|10) days\)" % re.escape(args.certificate_until), text):
            raise CheckFailed("certificate reads %r, expected 'until %s (9 or 10 days)'" % (text, args.certificate_until))
        if "warn" not in (dd.get_attribute("class") or "").split():
            raise CheckFailed("a certificate with 10 days left is not highlighted (class %r)" % dd.get_attribute("class"))
        say("certificate shown: %s (highlighted)" % text)

    def all_alive():
        rows = member_rows(driver)
        return all(
            n in rows and rows[n]["state_attr"] == "alive" and rows[n]["state_text"] == "alive"
            and rows[n]["name_text"] == n
            for n in args.names
        ) and rows

    rows = wait_for("all members alive in #members", 60, all_alive)
    say("members shown as alive: %s" % ", ".join(sorted(rows)))
    # Names are user data: markup in a name must show as text, never become elements.
    if driver.find_elements(By.CSS_SELECTOR, "#members b, #node b, #members script"):
        raise CheckFailed("markup from a member name became HTML elements (name not escaped)")

    wait_for("#live to read 'live'", 60, lambda: driver.find_element(By.ID, "live").text.strip() == "live")
    say("event stream connected (#live = live)")

    driver.execute_script("window.__statusPageTestMarker = 'same-page';")
    if file_row(driver, args.file_name) is not None:
        raise CheckFailed("%s is in #files before the upload" % args.file_name)

    up = subprocess.run(args.upload, capture_output=True, text=True, timeout=120)
    if up.returncode != 0:
        raise CheckFailed("upload command failed (%d): %s %s" % (up.returncode, up.stdout.strip(), up.stderr.strip()))
    say("uploaded %s through node 2" % args.file_name)

    row = wait_for("%s in #files" % args.file_name, 90, lambda: file_row(driver, args.file_name))
    say("file row appeared: %s" % " | ".join(td.text for td in row.find_elements(By.TAG_NAME, "td")))
    li = wait_for("an accepted event for %s in #events" % args.file_name, 90,
                  lambda: accepted_event(driver, args.file_name))
    say("accepted event appeared: %s" % li.text.replace("\n", " "))

    if driver.execute_script("return window.__statusPageTestMarker || null;") != "same-page":
        raise CheckFailed("the page was reloaded (the update was not live)")

    def age_text():
        return file_row(driver, args.file_name).find_element(By.CSS_SELECTOR, "td.age").text

    first = age_text()
    if not re.fullmatch(r"(\d+ s ago|in \d+ s)", first):
        raise CheckFailed("age cell reads %r, expected 'N s ago'" % first)
    wait_for("the age cell to tick (was %r)" % first, 15, lambda: age_text() != first)
    say("age cell ticks (%r -> %r)" % (first, age_text()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--names", nargs="+", required=True, help="member names; the first is the node opened")
    p.add_argument("--file-name", required=True)
    p.add_argument("--certificate-until", default="", help="certificate_expires_at of the node opened")
    p.add_argument("--screenshot", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("upload", nargs=argparse.REMAINDER, help="-- then the upload command")
    args = p.parse_args()
    if args.upload[:1] == ["--"]:
        args.upload = args.upload[1:]
    if not args.upload:
        p.error("no upload command given")

    # SIGTERM from the shell's trap: leave through `finally` so the browser is quit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,860", "--no-first-run", "--disable-extensions", "--lang=en-US"):
        options.add_argument(flag)
    service = Service(executable_path=args.chromedriver, log_output=os.devnull)
    driver = None
    ok = False
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(60)
        run_checks(driver, args)
        ok = True
    except CheckFailed as e:
        say("FAILED: %s" % e)
    except Exception as e:
        say("FAILED: %s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
    finally:
        if driver is not None:
            try:
                os.makedirs(os.path.dirname(args.screenshot), exist_ok=True)
                if driver.save_screenshot(args.screenshot):
                    say("screenshot: %s" % args.screenshot)
            except Exception as e:
                say("could not save the screenshot: %s" % e)
            try:
                logs = driver.get_log("browser")
                for entry in logs[-10:]:
                    if not ok or entry.get("level") == "SEVERE":
                        say("browser console: %s %s" % (entry.get("level"), entry.get("message")))
            except Exception:
                pass
            driver.quit()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
