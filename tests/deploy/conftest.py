import os

# The image tests need a built image: `make image-test` builds one and names it in
# PORTAL_IMAGE_ARCHIVE. `make test` leaves them out rather than reporting them skipped.
collect_ignore = [] if os.environ.get("PORTAL_IMAGE_ARCHIVE") else ["test_image.py"]
