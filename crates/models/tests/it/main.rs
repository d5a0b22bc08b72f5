mod assets;
mod real;
mod tiny;
