"""`molvae train`, with the CLI's progress callback (a bar per epoch and a line of metrics)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .common import StageBars, add_config_options, load_run_config, progress_bar

logger = logging.getLogger("molvae")


def add_train_command(sub: argparse._SubParsersAction) -> None:
    train_parser = sub.add_parser("train", help="train a SELFIES VAE")
    add_config_options(train_parser)
    train_parser.add_argument("--data", help="training file (data.path; default: the shipped "
                              "MOSES sample)")
    train_parser.add_argument("--epochs", type=int, help="train.epochs (default 10)")
    train_parser.add_argument("--out", help="output folder for checkpoints (train.out_dir; "
                              "default runs/train)")
    train_parser.add_argument("--resume", help="checkpoint to continue from (e.g. runs/train/last.pt)")
    train_parser.add_argument("--init-from", help="fine-tune: start from this checkpoint's weights "
                              "with a fresh optimizer, schedule and config (same vocabulary and "
                              "model shape; train.init_from)")
    train_parser.add_argument("--overwrite", action="store_true", default=None,
                              help="replace a model already trained in --out (train.overwrite)")
    train_parser.set_defaults(func=cmd_train)

    export_parser = sub.add_parser("export", help="a small inference file from a training "
                                   "checkpoint (no optimizer state)")
    export_parser.add_argument("src", help="training checkpoint, e.g. runs/train/best.pt")
    export_parser.add_argument("dest", help="inference model to write (.pt)")
    export_parser.add_argument("--half", action="store_true",
                               help="store the weights in float16 (half the size)")
    export_parser.add_argument("--hashes-apart", action="store_true",
                               help="write the training-set hashes once beside DEST "
                                    "(train_hashes_<digest>.npy), shared by later models")
    export_parser.add_argument("--max-codes", type=int,
                               help="keep at most this many stored prior codes")
    export_parser.add_argument("--codes-8bit", action="store_true",
                               help="store the prior codes in 8 bits per value (per-dimension grid)")
    export_parser.add_argument("--width", type=float,
                               help="the prior width sampling uses by default (> 0)")
    export_parser.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=None,
                               help="whether the model samples greedy tokens by default "
                                    "(when generate.greedy is not set)")
    export_parser.add_argument("--refine", type=int,
                               help="refinement passes the model samples with by default "
                                    "(when generate.refine is not set; 0-10)")
    export_parser.add_argument("--condition-width", type=float,
                               help="a conditional model: the prior width of requests by "
                                    "default (when generate.prior_width is not set)")
    export_parser.add_argument("--sampler-width", type=float,
                               help="a model with sampler weights (model.sample_flag): the prior "
                                    "width of unrefined draws by default (--refine 0)")
    export_parser.add_argument("--condition-guidance", type=float,
                               help="a conditional model: the guidance of requests by default "
                                    "(when generate.condition_guidance is not set; 0-20)")
    export_parser.add_argument("--condition-steer", type=float,
                               help="a model with a steering head: the steering strength of "
                                    "requests by default (generate.condition_steer; 0-100)")
    export_parser.add_argument("--hashes-of", metavar="MODEL",
                               help="judge novelty by MODEL's training-set hashes file (a model "
                                    "in DEST's folder, e.g. the one this was fine-tuned from) "
                                    "plus this model's molecules MODEL lacks, kept inline: no "
                                    "new hashes file")
    export_parser.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> None:
    from molvae.checkpoint import check_sampling, export_model

    from .common import UsageError, check_input, check_output, copy_companions

    if Path(args.dest).suffix.lower() != ".pt":
        raise UsageError(f"{args.dest}: the model file must end in .pt")
    if args.max_codes is not None and args.max_codes < 1:
        raise UsageError(f"--max-codes must be >= 1, got {args.max_codes}")
    if args.width is not None and not 0 < args.width < float("inf"):
        raise UsageError(f"--width must be a positive number, got {args.width}")
    try:
        sampling = check_sampling({k: v for k, v in {
            "greedy": args.greedy, "refine": args.refine, "condition_width": args.condition_width,
            "condition_guidance": args.condition_guidance, "sampler_width": args.sampler_width,
            "condition_steer": args.condition_steer,
        }.items() if v is not None})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.hashes_of and args.hashes_apart:
        raise UsageError("--hashes-of and --hashes-apart exclude each other")
    src = check_input(args.src)
    if Path(args.dest).resolve() == src.resolve():
        raise UsageError(f"{args.dest}: the export would replace its own source (a training "
                         "checkpoint's optimizer state is what --resume needs); write it elsewhere")
    if args.hashes_of:  # checked before anything is written
        other = check_input(args.hashes_of)
        if other.resolve().parent != Path(args.dest).resolve().parent:
            raise UsageError(f"--hashes-of {other}: write the export beside it (in "
                             f"{other.parent}), where its training-set hashes file is")
    check_output(args.dest, (".pt",))
    dest = export_model(src, args.dest, half=args.half,
                        hashes_apart=args.hashes_apart, max_codes=args.max_codes,
                        codes_8bit=args.codes_8bit, width=args.width, sampling=sampling)
    copy_companions(src, dest)
    if args.hashes_of:
        from molvae.checkpoint import share_hashes

        ref = share_hashes(dest, check_input(args.hashes_of))
        print(f"novelty judged by {ref['name']} ({ref['count']:,} training molecules) and "
              f"{ref['extra']:,} more of this model's own, kept in it")
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB)")
    if args.hashes_apart:
        from molvae.checkpoint import read_checkpoint

        ref = read_checkpoint(dest).get("train_hashes_file")
        if ref:  # else the source had no hashes to set apart
            hashes = dest.parent / ref["name"]
            print(f"wrote {hashes} ({hashes.stat().st_size / 1e6:.1f} MB, the training-set "
                  f"hashes of {ref['count']:,} molecules for novelty; keep it beside the model)")


class ProgressCallback:
    """A train.Callback: tqdm bar with loss, reconstruction, KL and token accuracy."""

    def __init__(self, data_bars: StageBars | None = None) -> None:
        self.bar = None
        self.info: dict = {}
        self.epoch = 1  # the epoch the next bar counts
        self.data_bars = data_bars  # the data preparation's bars, closed as training starts

    def on_train_start(self, info: dict) -> None:
        if self.data_bars is not None:
            self.data_bars.close()
        self.info = info
        self.epoch = info.get("first_epoch", 1)
        logger.info("training %s parameters on %s molecules (%s validation), device %s",
                    f"{info['parameters']:,}", f"{info['train_size']:,}",
                    f"{info['val_size']:,}", info["device"])

    def on_batch_end(self, step: int, m: dict) -> None:
        if self.bar is None:
            self.bar = progress_bar(self.info["train_size"], f"epoch {self.epoch}")
        self.bar.update(m["epoch_progress"])
        if step % 5 == 0:  # (train.sampler_only steps have no recon, kl, acc, beta)
            shown = {"loss": ".2f", "recon": ".2f", "kl": ".1f", "token_acc": ".3f", "beta": ".3f",
                     "distill": ".2f"}
            self.bar.set_postfix(refresh=False, **{k.removeprefix("token_"): f"{m[k]:{f}}"
                                                   for k, f in shown.items() if k in m})

    def on_epoch_end(self, epoch: int, m: dict) -> None:
        self._close()
        self.epoch = epoch + 1
        print(f"epoch {epoch}: val_loss {m['val_loss']:.3f} recon {m['val_recon']:.3f} "
              f"KL/mol {m['val_kl']:.2f} token_acc {m['val_token_acc']:.4f} "
              f"active_units {int(m['active_units'])}{_exact(m)}"
              + (f" distill {m['val_distill']:.3f}" if "val_distill" in m else ""), file=sys.stderr)

    def on_train_end(self, result) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args: argparse.Namespace) -> None:
    from molvae.train import train_model

    cfg = load_run_config(args, {
        "data.path": args.data,
        "train.epochs": args.epochs,
        "train.out_dir": args.out,
        "train.init_from": args.init_from,
        "train.overwrite": args.overwrite,
    })
    data_bars = StageBars()
    try:
        result = train_model(cfg.data, cfg.model, cfg.train,
                             callbacks=[ProgressCallback(data_bars)], resume=args.resume,
                             data_progress=data_bars)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: say how to go on from the last epoch
        last = Path(cfg.train.out_dir) / "last.pt"
        if last.is_file():
            data_bars.close()
            print(f"molvae train: {last} holds the last finished epoch; continue from it with "
                  f"the same command and --resume {last}", file=sys.stderr)
        raise
    last = result.history[-1] if result.history else {}
    print(f"model: {result.best_checkpoint}  (last: {result.checkpoint}); "
          f"{result.seconds / 60:.1f} min{_exact(last, ';')}")


def _exact(m: dict, sep: str = "") -> str:
    """The exact reconstruction of validation molecules, when it was measured
    (``train.recon_eval_size`` > 0)."""
    return f"{sep} exact_recon {m['val_exact_recon']:.3f}" if "val_exact_recon" in m else ""
