"""Train or sweep recurrent models. `python train.py --help` lists the config groups.

    python train.py -m cell=lstm,gru              # one Optuna study per cell and data size
    python train.py search=none cell=gru model.hidden_size=64   # one model, one MLflow run
"""

from rnnsweep.signals import exits_on_signal, install_sweep_handlers

# First, before the heavy imports: a SIGTERM while starting up ends with one line and 143.
install_sweep_handlers()

with exits_on_signal():
    import hydra
    from omegaconf import DictConfig

    from rnnsweep.cli import prepare_environment, run_job

    prepare_environment(__file__)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    with exits_on_signal():
        main()
