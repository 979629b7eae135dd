"""SDE-BNN against an ODE-net of the same architecture on scikit-learn's 8x8 digits (ships offline).

Both models are the same :class:`pyro_node_uq.models.SDEBNN`: a linear input layer to 32 hidden units, a
depth-continuous block dh = f(h; w_t) dt with f a 32-32-32 tanh MLP whose 2112 weights follow an SDE over depth,
and a linear readout.  The SDE-BNN has an OU prior on the weight path and a learned posterior drift; the ODE-net
(``stochastic=False``) has the same drift network with no diffusion and no KL, i.e. deterministic
depth-varying weights fitted by maximum likelihood.  Same optimiser, epochs, minibatches and solver grid.

Reports test accuracy, expected calibration error (15 equal-width confidence bins) and NLL of both for each
seed (the seed sets the train/test split, the initial networks and the minibatches), their means, the training
time, and a last line ``RESULT ...`` with the means.  Default: one intra-op thread (on the shared 2-core machine,
two threads made each tiny op wait for a busy core and ran about 19x slower).

    python benchmarks/sdebnn_digits.py [--epochs 40] [--seeds 0 1 2] [--threads 1]
"""
import argparse
import math

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from pyro_node_uq.data import StaticSplit
from pyro_node_uq.diagnostics import classification_scores
from pyro_node_uq.methods import run_sdebnn
from pyro_node_uq.models import SDEBNN


def evaluate(result, test, num_samples):
    scores = classification_scores(result.predict(test, num_samples=num_samples)["probs"], test.y)
    return {"acc": scores["accuracy"], "ece": scores["ece"], "nll": scores["nll"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--sigma", type=float, default=0.2)
    parser.add_argument("--particles", type=int, default=1)
    parser.add_argument("--dt", type=float, default=0.25)
    parser.add_argument("--method", default="midpoint")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    print(f"digits: {len(x)} images, {x.shape[1]} features, 10 classes, 25% test; {args.epochs} epochs, batch "
          f"{args.batch_size}, {args.method} dt={args.dt}, {args.threads} thread(s), seeds {args.seeds}")
    runs = {"sdebnn": [], "odenet": []}
    for seed in args.seeds:
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
        for name, stochastic in (("sdebnn", True), ("odenet", False)):
            net = SDEBNN(64, 10, likelihood="classification", input_layer="linear", hidden_dim=32, width=(32,),
                         sigma=args.sigma, bottleneck=32, stochastic=stochastic, seed=seed,
                         solver={"method": args.method, "dt": args.dt}, name=name)
            steps = args.epochs * math.ceil(len(x_train) / args.batch_size)
            fit = run_sdebnn(net, StaticSplit(x=x_train, y=y_train), num_steps=steps, batch_size=args.batch_size,
                             lr=args.lr, num_particles=args.particles if stochastic else 1, seed=seed,
                             progress_bar=not args.no_progress, elbo_particles=0)
            metrics = evaluate(fit, StaticSplit(x=x_test, y=y_test), args.samples if stochastic else 1)
            metrics["time"] = fit.wall_time
            runs[name].append(metrics)
            print(f"seed {seed} {name:7s} D={net.num_weights} weights: test acc {metrics['acc']:.4f}  "
                  f"ECE {metrics['ece']:.4f}  NLL {metrics['nll']:.4f}  train {metrics['time']:.1f} s")
    s, o = ({k: sum(r[k] for r in runs[n]) / len(runs[n]) for k in runs[n][0]} for n in ("sdebnn", "odenet"))
    wins = sum(a["ece"] < b["ece"] for a, b in zip(runs["sdebnn"], runs["odenet"]))
    for name, m in (("SDE-BNN", s), ("ODE-net", o)):
        print(f"mean {name}: acc {m['acc']:.4f}  ECE {m['ece']:.4f}  NLL {m['nll']:.4f}  train {m['time']:.1f} s")
    print(f"ECE ratio SDE-BNN / ODE-net = {s['ece'] / o['ece']:.3f} (lower in {wins}/{len(args.seeds)} seeds); "
          f"NLL ratio = {s['nll'] / o['nll']:.3f}; train-time ratio = {s['time'] / o['time']:.2f}")
    print(f"RESULT sdebnn_acc={s['acc']:.4f} sdebnn_ece={s['ece']:.4f} sdebnn_nll={s['nll']:.4f} "
          f"sdebnn_train_s={s['time']:.1f} odenet_acc={o['acc']:.4f} odenet_ece={o['ece']:.4f} "
          f"odenet_nll={o['nll']:.4f} odenet_train_s={o['time']:.1f} ece_ratio={s['ece'] / o['ece']:.3f} "
          f"ece_wins={wins}/{len(args.seeds)} threads={args.threads}")

if __name__ == "__main__":
    main()
