"""Small end-to-end experiments that check the engines (no download needed)."""
