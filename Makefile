# The two commands of the README. Everything they need is installed by scripts/.
.PHONY: run test lint

run:  ## Install, migrate, seed demo data and run web server + Celery worker + beat
	@./scripts/run.sh

test:  ## Run the whole test suite against PostgreSQL and Redis (browser tests included)
	@./scripts/test.sh

lint:  ## Static checks
	@./.venv/bin/ruff check .
