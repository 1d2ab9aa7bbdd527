# Measure (issue 17): standard Fashion CNN training accuracy per epoch on the paper's split (53,000 images), one thread;
# prints one JSON line per epoch. Used to choose the epoch budget E of the Fashion-MNIST rows.
# usage: CLIPBOOK_DATA=... OMP_NUM_THREADS=1 TQDM_DISABLE=1 python scripts/measure_fashion_epochs.py EPOCHS
import sys, time, torch, json
torch.set_num_threads(1)
from clipbook.repro.runner import load_split, build_run_model
from clipbook.core.tasks import ClassificationTask
from clipbook.core.training import TrainConfig, train
from clipbook.repro.experiments import DATASET_DEFAULTS
split = load_split("fashion")
d = dict(DATASET_DEFAULTS["fashion"]); d.update(method="standard", epochs=int(sys.argv[1]), seed=0, eval_lip_steps=0, eval_lip_pairs=1)
cfg = TrainConfig.from_dict(d)
class P:
    def on_epoch_end(self, model, rec):
        print(json.dumps({k: rec[k] for k in ("epoch", "train_acc", "loss", "time_s")}), flush=True)
model = build_run_model("fashion", "standard", 0)
train(model, ClassificationTask(split), cfg, [P()], desc="curve")
