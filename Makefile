# Two commands for a fresh machine: `make demo` (install + run the pipeline on embedded data) and
# `make test` (install + run the test suite). Both create the virtual environment .venv first.
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_DATA ?= data/demo

.PHONY: install test test-fast lint demo demo-pipeline clean-demo

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
	$(MAKE) demo-pipeline PYTHON=$(abspath $(PYTHON))

# The whole pipeline on synthetic data. Paths and sizes can be overridden: the slow test runs it in
# a temporary folder, smaller (REPO is where the scripts are; the configs' paths are relative to
# the working directory).
REPO := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
DEMO_CONFIGS ?= $(REPO)/config/demo
DEMO_DATA_ARGS ?=
DEMO_OUT ?= outputs/demo
DEMO_WEIGHTS := model_weights/demo
TEST_IMAGES := $(DEMO_DATA)/biodiversity/Test/images_png
SINGLE_MODELS := teacher student_target_only student_pretrain_all student_ft_target_kd

demo-pipeline:
	$(PYTHON) -m geoseg.datasets.synthetic --output-root $(DEMO_DATA) $(DEMO_DATA_ARGS)
	$(PYTHON) $(REPO)/create_combined_dataset.py --target-root $(DEMO_DATA)/biodiversity \
		--oem-root $(DEMO_DATA)/OpenEarthMap --output-root $(DEMO_DATA)/biodiversity_combined \
		--oem-scale 0.6667 --workers 2
	$(PYTHON) $(REPO)/train_supervision.py -c $(DEMO_CONFIGS)/teacher.py
	$(PYTHON) $(REPO)/train_kd.py -c $(DEMO_CONFIGS)/student_target_only.py
	$(PYTHON) $(REPO)/train_supervision.py -c $(DEMO_CONFIGS)/step1_pretrain_combined.py
	$(PYTHON) $(REPO)/train_kd.py -c $(DEMO_CONFIGS)/step2_finetune_target_kd.py
	for model in $(SINGLE_MODELS); do \
		$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_IMAGES) \
			--output-dir $(DEMO_OUT)/predictions/$$model --scales 1.0 --flips none \
			--checkpoints $(DEMO_WEIGHTS)/$$model/last.ckpt || exit 1; \
	done
	$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_IMAGES) \
		--output-dir $(DEMO_OUT)/predictions/student_ft_target_kd_tta --scales 0.75,1.0,1.25 \
		--checkpoints $(DEMO_WEIGHTS)/student_ft_target_kd/last.ckpt
	$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_IMAGES) \
		--output-dir $(DEMO_OUT)/predictions/ensemble_tta --scales 0.75,1.0,1.25 --save-rgb \
		--checkpoint1 $(DEMO_WEIGHTS)/student_target_only/last.ckpt \
		--checkpoint2 $(DEMO_WEIGHTS)/student_ft_target_kd/last.ckpt
	for row in $(SINGLE_MODELS) student_ft_target_kd_tta ensemble_tta; do \
		$(PYTHON) $(REPO)/evaluation/model_metrics.py --pred-dir $(DEMO_OUT)/predictions/$$row \
			--gt-dir $(DEMO_DATA)/biodiversity/Test/masks_png > /dev/null || exit 1; \
	done
	$(PYTHON) $(REPO)/evaluation/demo_report.py --predictions $(DEMO_OUT)/predictions \
		--data-root $(DEMO_DATA)/biodiversity --output $(DEMO_OUT)

clean-demo:
	rm -rf data/demo model_weights/demo lightning_logs/demo outputs/demo
