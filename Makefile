# Two commands for a fresh machine: `make demo` (install + run the pipeline on embedded data) and
# `make test` (install + run the test suite). Both create the virtual environment .venv first.
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_DATA := data/demo

.PHONY: install test test-fast lint demo clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

test: install
	$(PYTHON) -m pytest

test-fast: install
	$(PYTHON) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: install
	$(PYTHON) -m geoseg.datasets.synthetic --output-root $(DEMO_DATA)
	$(PYTHON) create_combined_dataset.py --target-root $(DEMO_DATA)/biodiversity \
		--oem-root $(DEMO_DATA)/OpenEarthMap --output-root $(DEMO_DATA)/biodiversity_combined \
		--oem-scale 0.6667
	$(PYTHON) train_supervision.py -c config/demo/teacher.py
	$(PYTHON) train_supervision.py -c config/demo/step1_pretrain_combined.py
	$(PYTHON) train_kd.py -c config/demo/student_target_only.py
	$(PYTHON) train_kd.py -c config/demo/step2_finetune_target_kd.py
	$(PYTHON) ensemble_inference.py --input-dir $(DEMO_DATA)/biodiversity/Test/images_png \
		--output-dir outputs/demo/ensemble_predictions \
		--checkpoint1 model_weights/demo/student_target_only/last.ckpt \
		--checkpoint2 model_weights/demo/student_ft_target_kd/last.ckpt \
		--scales 0.75,1.0,1.25 --save-rgb
	$(PYTHON) evaluation/model_metrics.py --pred-dir outputs/demo/ensemble_predictions \
		--gt-dir $(DEMO_DATA)/biodiversity/Test/masks_png

clean-demo:
	rm -rf data/demo model_weights/demo lightning_logs/demo outputs/demo
