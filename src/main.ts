/** The single-page app's entry: mounts the Svelte app (src/ui/App.svelte) into index.html. */
import { mount } from 'svelte';
import App from './ui/App.svelte';
import './ui/app.css';

mount(App, { target: document.getElementById('app')! });
