"""`python -m heartfast` (also what `torchrun -m heartfast` runs)."""
from heartfast.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
