# polyhead: `make demo` trains the Fashion-MNIST demo; `make test` runs the test suite.
# Both install into .venv first (PyTorch pinned here; pyproject.toml declares a range).

VENV    ?= .venv
PY      := $(VENV)/bin/python
PH      := $(VENV)/bin/polyhead
TORCH   := torch==2.14.1 torchvision==0.29.1
FMNIST  ?= /usr/share/datasets/fashion-mnist
DATA    ?= data/fashion-mnist

CHROMIUM ?= /usr/bin/chromium
# pytest-xdist processes: the suite took 7 min on 2 cores with 2 workers, 11.5 min with one
TEST_WORKERS ?= 2

.PHONY: install demo data test bench clean browser testdata

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]" $(TORCH)
	touch $@

$(FMNIST):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST not found in $(FMNIST): run 'sudo apt-get install dataset-fashion-mnist'," \
	       "or '$(PH) prepare fashion-mnist $(DATA) --download'"; exit 1; \
	fi

$(DATA)/train.parquet: | install $(FMNIST)
	$(PH) prepare fashion-mnist $(DATA) --source $(FMNIST) --missing-fraction 0.2

data: $(DATA)/train.parquet

demo: install data
	$(PH) train configs/fashion_mnist.yaml

# Debian's Chromium opens report.html headless in the report test (no browser download).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq chromium; \
	  else \
	    echo "note: $(CHROMIUM) not found ('sudo apt-get install chromium'); the report test is skipped outside CI"; \
	  fi; \
	fi

# The demo's Fashion-MNIST files: the recall@10 test of `polyhead neighbors` and the preparer tests
# read them (they are skipped, with a note, where the package cannot be installed).
testdata:
	@if [ ! -d $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "note: $(FMNIST) not found ('sudo apt-get install dataset-fashion-mnist'); the tests on the demo data are skipped"; \
	  fi; \
	fi

test: install browser testdata
	$(PY) -m pytest -q -n $(TEST_WORKERS)

bench: install data
	$(PY) benchmarks/train_throughput.py --data $(DATA)

clean:
	rm -rf runs $(DATA)
