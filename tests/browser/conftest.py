import pytest
from playwright.sync_api import Page

from tests.support.browser import new_page


@pytest.fixture
def page(browser, live_server) -> Page:
    page = new_page(browser, live_server.url)
    yield page
    page.context.close()
