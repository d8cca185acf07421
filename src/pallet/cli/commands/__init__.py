"""One module per `pallet` verb: `main(ctx, argv) -> int`, imported only when that verb runs."""
