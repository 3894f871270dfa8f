"""Qt-free core of LiveCC Desktop: sources, model loading, preprocessing, streaming session, CLI."""
