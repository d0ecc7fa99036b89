"""Train a model, evaluate it against PCA and JPEG, and look at its reconstructions.

python examples/train_and_evaluate.py                                   # seconds, on synthetic faces
python examples/train_and_evaluate.py --data data/celeba --size 128 --epochs 8 --nf 64   # the report's
"""

from __future__ import annotations

import argparse

import celebae


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--model", default="conv", choices=sorted(celebae.MODELS))
    parser.add_argument("--size", type=int, default=32, help="image size (the report's: 128)")
    parser.add_argument("--nf", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="runs/example")
    args = parser.parse_args(argv)

    settings = celebae.Settings(data=args.data, model=args.model, image_size=args.size, nf=args.nf,
                                epochs=args.epochs, synthetic_size=300, code_size=32, out=args.out)  # fmt: skip
    summary = celebae.train(settings, start="overwrite", progress=False)
    print(f"trained {summary['steps']} steps: test MSE {summary['test_mse']:.4f}, PSNR {summary['test_psnr']:.2f} dB")

    result = celebae.evaluate(args.out, split="test", baselines=("pca", "jpeg"))
    for row in result["methods"]:  # a codec that cannot meet a budget has no scores there
        psnr = f"{row['psnr']:.2f} dB" if row.get("psnr") is not None else "– (the budget is too small)"
        print(f"{row['method']:<12} {row['config']:<28} PSNR {psnr}")
    print(f"reconstructions: {celebae.RunDir(args.out).reconstructions_png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
