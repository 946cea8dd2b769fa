"""Inference backends behind one small interface (`Backend`), chosen by file type."""
