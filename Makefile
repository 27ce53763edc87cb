# The two commands of the README. Everything they need is installed by scripts/.
.PHONY: run test lint image image-test

run:  ## Install, migrate, seed demo data and run web server + Celery worker + beat
	@./scripts/run.sh

test:  ## Run the whole test suite against PostgreSQL and Redis (browser tests included)
	@./scripts/test.sh

lint:  ## Static checks
	@./.venv/bin/ruff check .

image:  ## Build the OCI image from Debian packages + pinned wheels, with its signed SBOM (var/image/)
	@./scripts/image.sh

image-test:  ## Build the image and run it with podman against PostgreSQL and Redis
	@./scripts/image-test.sh
