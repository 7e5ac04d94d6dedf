"""The Prefect UI, driven like a person would in headless Chromium (Playwright): start
`deliver` with custom parameters from its deployment page, then approve a paused
`promote` run through the UI's input form, which shows what is being approved and needs
an explicit decision. The runs execute on the Kubernetes worker.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.fixtures.services import Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture()
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()


def _field(scope: Any, label: str) -> Any:
    """The text input of the innermost schema-form property labelled ``label``."""
    name = "normalize-space()"
    xpath = (
        ".//div[contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')]"
        "[.//span[contains(@class, 'schema-form-property__label')]"
        f"[{name}='{label}' or {name}='{label} (Optional)']]"
    )
    return scope.locator(f"xpath={xpath}").last.locator("textarea, input[type='text']").first


def _choose(scope: Any, label: str, option: str) -> None:
    """Pick ``option`` in the select of the schema-form property labelled ``label``."""
    name = "normalize-space()"
    xpath = (
        ".//div[contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')]"
        "[.//span[contains(@class, 'schema-form-property__label')]"
        f"[{name}='{label}' or {name}='{label} (Optional)']]"
    )
    button = scope.locator(f"xpath={xpath}").last.locator("button.p-select-button__control")
    choice = scope.page.get_by_role("option", name=option, exact=True)
    button.first.click()  # focuses the select; the keyboard opens its option list
    if not choice.is_visible():
        button.first.press("Space")
    choice.click()


def _wait_run(predicate: Any, timeout: float, what: str) -> Any:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(limit=50):
                if predicate(run):
                    return run
            time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.usefixtures("platform")
def test_deliver_from_the_ui_then_approve_promote_in_the_ui(stack: Stack, page: Any) -> None:
    from prefect.client.orchestration import get_client

    ui = stack.prefect_api_url.removesuffix("/api")
    with get_client(sync_client=True) as client:
        deliver_id = client.read_deployment_by_name("deliver/deliver").id
    marker = f"ui-test-{time.monotonic_ns()}"

    # 1. Start deliver with custom parameters from the deployment page.
    page.goto(f"{ui}/deployments/deployment/{deliver_id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    _field(page, "app").fill("cart")
    _field(page, "tag").fill("seed")
    _field(page, "trigger").fill(marker)
    page.get_by_role("button", name="Submit").click()
    # The form page is itself under /deployments/deployment/: wait until the UI has left it
    # (the run was created), and say so at once if it did not, instead of waiting 300 s.
    page.wait_for_url(lambda url: not urlparse(url).path.endswith("/run"), timeout=60_000)

    run = _wait_run(
        lambda r: r.parameters.get("trigger") == marker and r.state and r.state.is_final(),
        300,
        "the deliver run started from the UI to finish",
    )
    assert run.parameters["app"] == "cart" and run.parameters["tag"] == "seed"
    assert run.state.is_completed(), run.state

    # 2. A promotion to protected prod pauses; approve it through the UI form.
    # (The sync Prefect client: Playwright's sync API runs an event loop in this thread.)
    with get_client(sync_client=True) as client:
        promote_id = client.read_deployment_by_name("promote/promote").id
        promotion = client.create_flow_run_from_deployment(promote_id, parameters={"app": "cart"})
    _wait_run(
        lambda r: r.id == promotion.id and r.state and r.state.is_paused(),
        300,
        "the promote run to pause for approval",
    )
    page.goto(f"{ui}/runs/flow-run/{promotion.id}")
    page.get_by_role("button", name=re.compile("Resume")).click()
    dialog = page.get_by_role("dialog")
    # The form says what is being approved, and the decision has no default.
    for shown in ("Promote cart from dev to prod", "digest", "verified at"):
        # wait_for: the dialog renders its description after the form schema loads.
        dialog.get_by_text(shown).first.wait_for(state="visible", timeout=30_000)
    _choose(dialog, "Decision", "approve")
    _field(dialog, "Approver").fill("release-manager")
    _field(dialog, "Reason").fill("CHG-42 approved in the browser test")
    dialog.get_by_role("button", name="Submit").click()

    done = _wait_run(
        lambda r: r.id == promotion.id and r.state and r.state.is_final(), 300, "promote to end"
    )
    assert done.state.is_completed(), done.state
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[promotion.id]))
        )
    decision = next(a for a in artifacts if a.key == "approval-decision")
    assert "release-manager" in str(decision.data) and "CHG-42" in str(decision.data)
