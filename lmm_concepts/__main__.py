"""`python -m lmm_concepts` runs the same CLI as the `lmm-concepts` command (and works under torchrun)."""

from lmm_concepts.cli import main

if __name__ == "__main__":
    main()
