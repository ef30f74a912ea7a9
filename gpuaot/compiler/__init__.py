"""The compiler: discover → frontend → methods → lower → target → bundle."""
