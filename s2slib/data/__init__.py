"""Telugu speech data: synthesis, bundled samples, public corpora, preprocessing and manifests."""
