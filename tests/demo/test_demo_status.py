"""The demo model's progress on the catalog and playground pages: DEBUG only, and a failed
engine build says what is missing and how to register another server instead."""

import subprocess

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from portal.demo import prepare
from portal.demo.models import DemoModelState, DemoPhase


def test_the_command_refuses_to_run_without_debug(settings, db):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("demo_model")
    assert not DemoModelState.objects.exists()


def test_a_failed_engine_build_says_what_is_missing(db, tmp_path):
    log = tmp_path / "build.log"
    log.write_text("\x1b[1;34m==>\x1b[0m Installing\n\x1b[1;31mError:\x1b[0m No C++ compiler: "
                   "pip can't build llama-cpp-python. Install one (apt-get install g++ cmake) "
                   "and run again.\n")
    failed = subprocess.Popen(["false"])
    with pytest.raises(prepare.DemoUnavailable) as raised:
        prepare.engine_build_result(failed, log)
    assert str(raised.value).startswith("The inference engine could not be built: No C++ "
                                         "compiler")
    assert "endpoint_register" in str(raised.value)


def test_the_catalog_and_playground_show_progress_in_debug_only(settings, client, msp_admin,
                                                               developer, tenant):
    prepare.state_set(DemoPhase.SCANNING, "Scanning: GGUF header and chat template checks.")
    settings.DEBUG = True
    client.force_login(msp_admin)
    page = client.get(reverse("models_catalog:catalog")).content.decode()
    assert "Demo model: scanning" in page and "GGUF header and chat template" in page
    assert 'hx-trigger="every 3s"' in page
    client.force_login(developer)
    page = client.get(reverse("gateway:playground", args=[tenant.slug])).content.decode()
    assert "Demo model: scanning" in page and "appears in the list below" in page

    prepare.state_set(DemoPhase.FAILED, problem="The inference engine could not be built: No "
                                                "C++ compiler. Register another server instead")
    page = client.get(reverse("demo:status") + "?for=playground").content.decode()
    assert "No C++ compiler" in page and "every 3s" not in page  # stops polling

    settings.DEBUG = False
    page = client.get(reverse("gateway:playground", args=[tenant.slug])).content.decode()
    assert "Demo model" not in page
    assert client.get(reverse("demo:status")).status_code == 404
