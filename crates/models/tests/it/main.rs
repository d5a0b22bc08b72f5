mod assets;
mod real;
mod tiny;
mod llm;
